package anyconnect_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/tests/lab"
)

// TestCookieNeedsTheLoginsCertificate: in a group that requires a certificate, a CONNECT with the login's cookie
// is refused unless its TLS connection presents the very certificate the login used: none, or another one of the
// same user, will not do, on the first CONNECT or a reconnect; the cookie stays good for its holder.
func TestCookieNeedsTheLoginsCertificate(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{certGroup}})
	aliceCert, otherAliceCert := e.pki.Client(t, 100, "alice"), e.pki.Client(t, 100, "alice")
	token := e.client(&aliceCert).login("", "", "", "")
	refused := func(what string, c *goClient) {
		t.Helper()
		tn, resp := c.connect(token, false)
		if tn != nil || resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("X-Reason"), "certificate") {
			t.Fatalf("%s: %s %q, want 401 naming the certificate", what, resp.Status, resp.Header.Get("X-Reason"))
		}
	}
	refused("CONNECT without a certificate", e.client(nil))
	refused("CONNECT with another certificate of the same user", e.client(&otherAliceCert))
	tn, resp := e.client(&aliceCert).connect(token, false)
	if tn == nil {
		t.Fatalf("CONNECT with the login's certificate: %s %q", resp.Status, resp.Header.Get("X-Reason"))
	}
	<-e.be.connected
	if err := ping(tn, 1); err != nil {
		t.Fatal(err)
	}
	// A reconnect is held to the same rule.
	e.cutAll()
	waitFor(t, 5*time.Second, func() bool { return e.srv.Stats().Detached == 1 })
	refused("reconnect without a certificate", e.client(nil))
	refused("reconnect with another certificate", e.client(&otherAliceCert))
	tn, resp = e.client(&aliceCert).connect(token, false)
	if tn == nil {
		t.Fatalf("reconnect with the login's certificate: %s %q", resp.Status, resp.Header.Get("X-Reason"))
	}
	if err := ping(tn, 2); err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Stats(); st.BadCookies != 4 || st.Connects != 1 || st.Reconnects != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// TestReconnectCheckedAgain: a client that comes back with its cookie is checked by the backend again; a refusal
// answers 401 with the backend's words, ends the session and invalidates the cookie.
func TestReconnectCheckedAgain(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	_, tn, _, token := e.established(false)
	if err := ping(tn, 1); err != nil {
		t.Fatal(err)
	}
	e.cutAll()
	waitFor(t, 5*time.Second, func() bool { return e.srv.Stats().Detached == 1 })
	tn, resp := e.client(nil).connect(token, false)
	if tn == nil {
		t.Fatalf("reconnect: %s", resp.Status)
	}
	e.be.mu.Lock()
	e.be.refuseAgain = "the user is disabled or was deleted since the login"
	e.be.mu.Unlock()
	e.cutAll()
	waitFor(t, 5*time.Second, func() bool { return e.srv.Stats().Detached == 1 })
	tn, resp = e.client(nil).connect(token, false)
	if tn != nil || resp.StatusCode != 401 || resp.Header.Get("X-Reason") != e.be.refuseAgain {
		t.Fatalf("reconnect of a disabled user: %s %q", resp.Status, resp.Header.Get("X-Reason"))
	}
	if dc := e.be.waitDisconnect(t, 5*time.Second); !errors.Is(dc.err, anyconnect.ErrKilled) {
		t.Fatalf("the session ended with %v", dc.err)
	}
	if tn, resp := e.client(nil).connect(token, false); tn != nil || resp.StatusCode != 401 {
		t.Fatalf("the cookie after the refused reconnect: %s", resp.Status)
	}
	e.be.mu.Lock()
	defer e.be.mu.Unlock()
	if e.be.rechecks != 2 || len(e.be.connects) != 1 {
		t.Errorf("%d rechecks, %d Connect calls; want 2 and 1", e.be.rechecks, len(e.be.connects))
	}
}

// TestInteropCookieNeedsTheLoginsCertificate: the stock client's cookie from a certificate login does not open a
// tunnel over a connection with another certificate of the same user, or with none; with the login's certificate
// it does.
func TestInteropCookieNeedsTheLoginsCertificate(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "devices", Certificate: true}}})
	cert, key := e.pki.ClientFiles(t, e.lab.Dir, 10, "alice")
	otherDir := t.TempDir()
	otherCert, otherKey := e.pki.ClientFiles(t, otherDir, 11, "alice")
	cookie := e.authenticate("", "-c", cert, "-k", key)
	for _, try := range []struct {
		what string
		args []string
	}{
		{"another certificate of alice", []string{"-c", otherCert, "-k", otherKey}},
		{"no certificate", nil},
	} {
		c := e.openconnect(cookie+"\n", append([]string{"--cookie-on-stdin"}, try.args...)...)
		if err := c.Proc.WaitExit(lab.Within(t, 15*time.Second)); err != nil {
			t.Fatalf("%s: openconnect did not give up: %v", try.what, err)
		}
		if out := c.Proc.Output(); !strings.Contains(out, "401 Unauthorized") {
			t.Fatalf("%s: no 401:\n%s", try.what, out)
		}
		if n := len(e.be.connected); n != 0 {
			t.Fatalf("%s: a session was admitted", try.what)
		}
	}
	if st := e.srv.Stats(); st.BadCookies != 2 || st.Connects != 0 {
		t.Fatalf("stats %+v, want two CONNECTs refused for their certificate", st)
	}
	c := e.openconnect(cookie+"\n", "--cookie-on-stdin", "-c", cert, "-k", key)
	c.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
}
