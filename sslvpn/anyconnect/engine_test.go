package anyconnect_test

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/anyconnect/internal/authxml"
	"toride/sslvpn/anyconnect/internal/cstp"
	"toride/sslvpn/anyconnect/internal/pskgcm"
	"toride/sslvpn/internal/icmptest"
)

var (
	pwGroup   = anyconnect.Group{Name: "staff", Label: "Staff", Password: true}
	otpGroup  = anyconnect.Group{Name: "secure", Label: "Secure", Password: true, OTP: true}
	certGroup = anyconnect.Group{Name: "devices", Label: "Devices", Certificate: true}
)

func TestLoginFlows(t *testing.T) {
	for _, tc := range []struct {
		name      string
		group     anyconnect.Group
		cert      bool
		forms     []string // the forms' ids and inputs, in order
		user      string
		wantCert  bool
		wantOTP   bool
		wantError string
	}{
		{name: "password", group: pwGroup, forms: []string{"main:username,password"}, user: "alice"},
		{name: "password+OTP", group: otpGroup, forms: []string{"main:username,password", "challenge:answer"}, user: "alice", wantOTP: true},
		{name: "OTP only", group: anyconnect.Group{Name: "otp", OTP: true}, forms: []string{"main:username", "challenge:answer"}, user: "alice", wantOTP: true},
		{name: "certificate", group: certGroup, cert: true, user: "alice", wantCert: true},
		{name: "certificate+OTP", group: anyconnect.Group{Name: "c", Certificate: true, OTP: true}, cert: true, forms: []string{"challenge:answer"}, user: "alice", wantCert: true, wantOTP: true},
		{name: "certificate+password", group: anyconnect.Group{Name: "c", Certificate: true, Password: true}, cert: true, forms: []string{"main:username,password"}, user: "alice", wantCert: true},
		{name: "certificate missing", group: certGroup, user: "alice", wantError: "requires a client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{tc.group}})
			var cert = e.pki.Client(t, 100, "alice")
			c := e.client(nil)
			if tc.cert {
				c = e.client(&cert)
			}
			d := c.init("")
			var seen []string
			for d.Auth.ID != "success" && d.Auth.Error == "" && len(seen) < 5 {
				seen = append(seen, d.Auth.ID+":"+d.inputs())
				switch d.Auth.ID {
				case "main":
					d = c.reply(d, "", "username", tc.user, "password", "alice-pw")
				case "challenge":
					d = c.reply(d, "", "answer", e.be.otp)
				}
			}
			if tc.wantError != "" {
				if !strings.Contains(d.Auth.Error, tc.wantError) || e.be.authCount() != 0 {
					t.Fatalf("want error %q without a backend call; got %+v", tc.wantError, d.Auth)
				}
				return
			}
			if strings.Join(seen, " ") != strings.Join(tc.forms, " ") {
				t.Errorf("forms %v, want %v", seen, tc.forms)
			}
			if d.Auth.ID != "success" {
				t.Fatalf("login did not succeed: %+v", d.Auth)
			}
			if e.be.authCount() != 1 {
				t.Fatalf("Authenticate called %d times, want once", e.be.authCount())
			}
			a := e.be.auths[0]
			if (a.Certificate != nil) != tc.wantCert || a.HasOTP != tc.wantOTP || a.Group != tc.group.Name || a.ClientVersion != "v9.01" {
				t.Errorf("AuthRequest: cert %v otp %v group %q version %q", a.Certificate != nil, a.HasOTP, a.Group, a.ClientVersion)
			}
			if st := e.srv.Stats(); st.LoginsOK != 1 || st.Cookies != 1 || st.PendingLogins != 0 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

func TestFailedLoginShowsFormAgain(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{otpGroup}})
	c := e.client(nil)
	d := c.init("")
	d = c.reply(d, "", "username", "alice", "password", "wrong")
	if d.Auth.ID != "challenge" {
		t.Fatalf("the OTP is asked whatever the password: %+v", d.Auth)
	}
	d = c.reply(d, "", "answer", e.be.otp)
	if d.Auth.ID != "main" || d.Auth.Error != errBadLogin.Error() || d.Handle == "" || d.inputs() != "username,password" {
		t.Fatalf("after a failed login: %+v", d)
	}
	// Missing fields are asked again without counting an attempt.
	d = c.reply(d, "", "username", "alice")
	if d.Auth.ID != "main" || d.Auth.Error != "Enter your password." {
		t.Fatalf("missing password: %+v", d.Auth)
	}
	d = c.reply(d, "", "username", "alice", "password", "alice-pw")
	d = c.reply(d, "", "answer", "")
	if d.Auth.ID != "challenge" || d.Auth.Error == "" {
		t.Fatalf("empty OTP: %+v", d.Auth)
	}
	d = c.reply(d, "", "answer", e.be.otp)
	if d.Auth.ID != "success" {
		t.Fatalf("second login: %+v", d.Auth)
	}
	if st := e.srv.Stats(); st.LoginsFailed != 1 || st.LoginsOK != 1 || e.be.authCount() != 2 {
		t.Errorf("stats %+v, backend calls %d", st, e.be.authCount())
	}
}

func TestGroupList(t *testing.T) {
	e := newEngine(t, anyconnect.Config{DefaultGroup: "secure", Groups: []anyconnect.Group{pwGroup, otpGroup, certGroup}})
	c := e.client(nil)
	d := c.init("")
	opts := d.Auth.Form.Options
	if len(opts) != 3 || opts[0].Value != "secure" || opts[0].Selected != "true" || opts[1].Label != "Staff" || opts[1].Selected != "" {
		t.Fatalf("group list: %+v", opts)
	}
	// The user picks another profile: its form (and the same login handle is not reused).
	d2 := c.reply(d, "devices")
	if d2.Auth.ID != "main" || !strings.Contains(d2.Auth.Error, "requires a client certificate") {
		t.Fatalf("certificate group without a certificate: %+v", d2.Auth)
	}
	// Groups are found by label too (Cisco's clients send the label), and an unknown one means the default.
	if d := c.init("Staff"); d.Auth.Form.Options[0].Value != "staff" {
		t.Errorf("by label: %+v", d.Auth.Form.Options)
	}
	if d := c.init("nope"); d.Auth.Form.Options[0].Value != "secure" {
		t.Errorf("unknown group: %+v", d.Auth.Form.Options)
	}
	// The group in the URL path selects it (https://vpn/staff).
	resp, body := c.do("POST", "/staff", (&authxml.Request{Type: authxml.TypeInit}).Marshal())
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<option value="staff" selected="true">`) {
		t.Errorf("group from the path: %s", body)
	}
}

func TestLoginExpires(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, AuthTimeout: time.Minute, Now: clock})
	c := e.client(nil)
	d := c.init("")
	now.Add(int64(2 * time.Minute))
	d = c.reply(d, "", "username", "alice", "password", "alice-pw")
	if d.Auth.ID != "main" || !strings.Contains(d.Auth.Error, "expired") || e.be.authCount() != 0 {
		t.Fatalf("expired login: %+v", d.Auth)
	}
	if st := e.srv.Stats(); st.LoginsExpired != 1 {
		t.Errorf("stats: %+v", st)
	}
	// A cookie not used within its lifetime is gone too.
	token := c.login("", "alice", "alice-pw", "")
	now.Add(int64(6 * time.Minute))
	if tn, resp := c.connect(token, false); tn != nil || resp.StatusCode != 401 {
		t.Fatalf("CONNECT with a stale cookie: %v", resp.Status)
	}
}

func TestProfileDownload(t *testing.T) {
	profile := []byte(`<?xml version="1.0"?><AnyConnectProfile><ServerList/></AnyConnectProfile>`)
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true, ProfileXML: profile}, otpGroup}})
	c := e.client(nil)
	d := c.init("staff")
	d = c.reply(d, "staff", "username", "alice", "password", "alice-pw")
	sum := sha1.Sum(profile)
	if d.Profile.URI != "/profiles/staff.xml" || d.Profile.Hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("manifest: %+v", d.Profile)
	}
	certSum := sha1.Sum(e.pki.Server.Certificate[0])
	if d.CertHash != strings.ToUpper(hex.EncodeToString(certSum[:])) {
		t.Errorf("server-cert-hash %q", d.CertHash)
	}
	resp, body := c.do("GET", "/profiles/staff.xml", nil)
	if resp.StatusCode != 200 || string(body) != string(profile) {
		t.Fatalf("download: %s %q", resp.Status, body)
	}
	// NetworkManager's path, percent-encoded.
	if resp, _ := c.do("GET", "/profiles%2Fstaff.xml", nil); resp.StatusCode != 200 {
		t.Errorf("encoded path: %s", resp.Status)
	}
	if resp, _ := c.do("GET", "/profiles/secure.xml", nil); resp.StatusCode != 404 {
		t.Errorf("another group's profile: %s", resp.Status)
	}
	anon := e.client(nil)
	if resp, _ := anon.do("GET", "/profiles/staff.xml", nil); resp.StatusCode != 401 {
		t.Errorf("without a cookie: %s", resp.Status)
	}
}

func TestHTTPErrors(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	c := e.client(nil)
	if resp, body := c.do("GET", "/", nil); resp.StatusCode != 200 || !strings.Contains(string(body), `<auth id="main">`) {
		t.Errorf("GET /: %s %s", resp.Status, body)
	}
	if resp, _ := c.do("GET", "/+CSCOT+/translation-table?type=mo", nil); resp.StatusCode != 200 {
		t.Errorf("translation table: %s", resp.Status)
	}
	if resp, _ := c.do("DELETE", "/", nil); resp.StatusCode != 405 {
		t.Errorf("DELETE: %s", resp.Status)
	}
	c = e.client(nil)
	if resp, _ := c.do("POST", "/", []byte("username=a&password=b")); resp.StatusCode != 400 {
		t.Errorf("form-encoded login: %s", resp.Status)
	}
	// A malformed request gets 400 and the connection is closed.
	c = e.client(nil)
	c.conn.Write([]byte("GARBAGE\r\n\r\n"))
	buf := make([]byte, 64)
	n, _ := c.conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400") {
		t.Errorf("garbage: %q", buf[:n])
	}
	if st := e.srv.Stats(); st.HTTPErrors != 2 {
		t.Errorf("stats: %+v", st)
	}
}

func TestLogout(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	c := e.client(nil)
	token := c.login("", "alice", "alice-pw", "")
	resp, _ := c.post(&authxml.Request{Type: authxml.TypeLogout, SessionToken: token})
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if tn, resp := c.connect(token, false); tn != nil || resp.StatusCode != 401 {
		t.Fatalf("CONNECT after logout: %s", resp.Status)
	}
}

// established logs in and connects a client; it returns the tunnel and the session.
func (e *engine) established(dtlsWanted bool) (*goClient, *tunnel, anyconnect.Session, string) {
	e.t.Helper()
	c := e.client(nil)
	token := c.login("", "alice", "alice-pw", "")
	tn, resp := c.connect(token, dtlsWanted)
	if tn == nil {
		e.t.Fatalf("CONNECT: %s %s", resp.Status, resp.Header.Get("X-Reason"))
	}
	select {
	case s := <-e.be.connected:
		return c, tn, s, token
	case <-time.After(5 * time.Second):
		e.t.Fatal("no session")
	}
	return nil, nil, nil, ""
}

func ping(tn *tunnel, seq uint16) error {
	addr := netip.MustParseAddr(tn.hdr.Get("X-CSTP-Address"))
	if err := tn.send(cstp.Data, icmptest.EchoRequest(addr, netip.MustParseAddr("10.8.0.1"), seq, 56)); err != nil {
		return err
	}
	p, err := tn.recvType(cstp.Data, 5*time.Second)
	if err != nil {
		return err
	}
	if len(p) != 84 || p[20] != 0 {
		return errors.New("not an echo reply")
	}
	return nil
}

func TestTunnel(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DTLS: true, MTU: 1300})
	e.be.nets["staff"] = groupNet{routes: []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")}}
	c, tn, s, token := e.established(true)
	h := tn.hdr
	for k, want := range map[string]string{
		"X-CSTP-Address": "10.8.0.2", "X-CSTP-Netmask": "255.255.255.0", "X-CSTP-DNS": "10.8.0.1",
		"X-CSTP-MTU": "1300", "X-CSTP-Base-MTU": "1500", "X-CSTP-DPD": "30", "X-CSTP-Keepalive": "20",
		"X-CSTP-Default-Domain": "corp.test", "X-DTLS-CipherSuite": "PSK-NEGOTIATE", "X-CSTP-Idle-Timeout": "none",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if got := strings.Join(h.Values("X-CSTP-Split-Include"), " "); got != "10.8.0.0/255.255.255.0 192.168.10.0/255.255.255.0" {
		t.Errorf("split include %q", got)
	}
	if len(tn.appID) != 32 || h.Get("X-DTLS-Port") == "" {
		t.Errorf("DTLS headers: %v", h)
	}
	for i := range 5 {
		if err := ping(tn, uint16(i)); err != nil {
			t.Fatal(err)
		}
	}
	// DPD is answered with the same payload.
	if err := tn.send(cstp.DPDRequest, []byte("probe")); err != nil {
		t.Fatal(err)
	}
	if p, err := tn.recvType(cstp.DPDResp, 5*time.Second); err != nil || string(p) != "probe" {
		t.Fatalf("DPD response %q %v", p, err)
	}
	_ = tn.send(cstp.Keepalive, nil)
	if st := s.Stats(); st.PacketsIn != 5 || st.PacketsOut != 5 || st.DTLSUp {
		t.Errorf("stats: %+v", st)
	}
	cr := e.be.lastConnect()
	if cr.Group != "staff" || cr.Identity.User != "alice" || !cr.DTLS || cr.BaseMTU != 1500 || cr.Hostname != "test" {
		t.Errorf("ConnectRequest: %+v", cr)
	}
	// The client leaves: the session ends and its cookie with it.
	_ = tn.send(cstp.Disconnect, []byte("\xb0Client received SIGINT"))
	dc := e.be.waitDisconnect(t, 5*time.Second)
	if !errors.Is(dc.err, anyconnect.ErrClientExit) || !strings.Contains(dc.err.Error(), "Client received SIGINT") {
		t.Errorf("Disconnected: %v", dc.err)
	}
	c2 := e.client(nil)
	if tn, resp := c2.connect(token, false); tn != nil || resp.StatusCode != 401 {
		t.Errorf("CONNECT after the session ended: %s", resp.Status)
	}
	_ = c
}

func TestFullTunnel(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	e.be.mu.Lock()
	e.be.fullTunnel = true
	e.be.mu.Unlock()
	_, tn, _, _ := e.established(false)
	if v := tn.hdr.Values("X-CSTP-Split-Include"); len(v) != 0 || tn.hdr.Get("X-CSTP-Tunnel-All-DNS") != "true" || tn.hdr.Get("X-DTLS-App-ID") != "" {
		t.Errorf("full tunnel headers: %v", tn.hdr)
	}
}

func TestConnectRefused(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	c := e.client(nil)
	token := c.login("", "alice", "alice-pw", "")
	if tn, resp := c.connect("0000", false); tn != nil || resp.StatusCode != 401 || resp.Header.Get("X-Reason") == "" {
		t.Fatalf("bad cookie: %v", resp.Status)
	}
	c = e.client(nil)
	e.be.mu.Lock()
	e.be.refuse = "connection limit reached: 2 sessions (flavor small)"
	e.be.mu.Unlock()
	tn, resp := c.connect(token, false)
	if tn != nil || resp.StatusCode != 503 || resp.Header.Get("X-Reason") != e.be.refuse {
		t.Fatalf("refused: %v %q", resp.Status, resp.Header.Get("X-Reason"))
	}
	if st := e.srv.Stats(); st.Refused != 1 || st.BadCookies != 1 || st.Sessions != 0 {
		t.Errorf("stats: %+v", st)
	}
	if len(e.be.disconnected) != 0 {
		t.Error("Disconnected for a session Connect refused")
	}
}

func TestReconnect(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	_, tn, s, token := e.established(false)
	if err := ping(tn, 1); err != nil {
		t.Fatal(err)
	}
	e.cutAll()
	waitFor(t, 5*time.Second, func() bool { return e.srv.Stats().Detached == 1 })
	if s.SendPacket(make([]byte, 40)) {
		t.Error("SendPacket accepted a packet for a session without a connection")
	}
	c2 := e.client(nil)
	tn2, resp := c2.connect(token, false)
	if tn2 == nil {
		t.Fatalf("reconnect refused: %s", resp.Status)
	}
	if tn2.hdr.Get("X-CSTP-Address") != tn.hdr.Get("X-CSTP-Address") {
		t.Errorf("address changed on reconnect")
	}
	if err := ping(tn2, 2); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Reconnects != 1 || len(e.be.connects) != 1 || e.srv.Stats().Sessions != 1 {
		t.Errorf("not the same session: %+v", st)
	}
	// A third connection with the cookie takes the session over from the second.
	c3 := e.client(nil)
	tn3, _ := c3.connect(token, false)
	if tn3 == nil {
		t.Fatal("takeover refused")
	}
	if _, _, err := tn2.recv(2 * time.Second); err == nil {
		t.Error("the replaced connection still works")
	}
	if err := ping(tn3, 3); err != nil {
		t.Fatal(err)
	}
	ev := drainEvents(e.be)
	if !slicesContains(ev, anyconnect.EventDetached) || !slicesContains(ev, anyconnect.EventReconnected) {
		t.Errorf("events %v", ev)
	}
}

func TestReconnectTimeout(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, CookieLifetime: 300 * time.Millisecond, DPD: time.Second})
	_, _, _, token := e.established(false)
	e.cutAll()
	dc := e.be.waitDisconnect(t, 5*time.Second)
	if !errors.Is(dc.err, anyconnect.ErrReconnectTimeout) {
		t.Fatalf("Disconnected: %v", dc.err)
	}
	if tn, resp := e.client(nil).connect(token, false); tn != nil || resp.StatusCode != 401 {
		t.Errorf("CONNECT after the reconnect window: %s", resp.Status)
	}
}

func TestDeadPeerDetection(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DPD: time.Second})
	_, tn, _, _ := e.established(false)
	start := time.Now()
	// The server probes a silent client, then gives the connection up (the session waits for a reconnect).
	if _, err := tn.recvType(cstp.DPDRequest, 3*time.Second); err != nil {
		t.Fatalf("no DPD request: %v", err)
	}
	waitFor(t, 6*time.Second, func() bool { return e.srv.Stats().Detached == 1 })
	if d := time.Since(start); d < 2500*time.Millisecond {
		t.Errorf("detached after %v, before three DPD intervals", d)
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, IdleTimeout: 500 * time.Millisecond})
		_, tn, _, _ := e.established(false)
		if tn.hdr.Get("X-CSTP-Idle-Timeout") != "1" {
			t.Errorf("idle header %q", tn.hdr.Get("X-CSTP-Idle-Timeout"))
		}
		p, err := tn.recvType(cstp.Disconnect, 5*time.Second)
		if err != nil || !strings.Contains(string(p), "idle timeout") {
			t.Fatalf("DISCONNECT %q %v", p, err)
		}
		if dc := e.be.waitDisconnect(t, 5*time.Second); !errors.Is(dc.err, anyconnect.ErrIdleTimeout) {
			t.Errorf("Disconnected: %v", dc.err)
		}
	})
	t.Run("session", func(t *testing.T) {
		e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, SessionTimeout: 700 * time.Millisecond, DPD: time.Second})
		_, tn, _, _ := e.established(false)
		if tn.hdr.Get("X-CSTP-Session-Timeout") != "1" {
			t.Errorf("session timeout header %q", tn.hdr.Get("X-CSTP-Session-Timeout"))
		}
		if dc := e.be.waitDisconnect(t, 5*time.Second); !errors.Is(dc.err, anyconnect.ErrSessionTimeout) {
			t.Errorf("Disconnected: %v", dc.err)
		}
	})
}

func TestCloseAndRevoke(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	_, tn, s, token := e.established(false)
	s.Close("certificate revoked")
	s.Close("twice")
	p, err := tn.recvType(cstp.Disconnect, 5*time.Second)
	if err != nil || string(p) != "\xb0certificate revoked" {
		t.Fatalf("DISCONNECT %q %v", p, err)
	}
	dc := e.be.waitDisconnect(t, 5*time.Second)
	if !errors.Is(dc.err, anyconnect.ErrKilled) || dc.s.ID() != s.ID() {
		t.Errorf("Disconnected: %v", dc.err)
	}
	if tn, resp := e.client(nil).connect(token, false); tn != nil || resp.StatusCode != 401 {
		t.Errorf("CONNECT with the cut session's cookie: %s", resp.Status)
	}
	// Revoke reaches cookies that have not connected yet, and sessions.
	c := e.client(nil)
	pending := c.login("", "bob", "bob-pw", "")
	_, _, s2, _ := e.established(false)
	n := e.srv.Revoke(func(id *anyconnect.Identity) bool { return true }, "user deleted")
	if n != 2 {
		t.Errorf("Revoke invalidated %d cookies, want 2", n)
	}
	if dc := e.be.waitDisconnect(t, 5*time.Second); dc.s.ID() != s2.ID() || !errors.Is(dc.err, anyconnect.ErrKilled) {
		t.Errorf("Disconnected after Revoke: %v", dc.err)
	}
	if tn, resp := c.connect(pending, false); tn != nil || resp.StatusCode != 401 {
		t.Errorf("CONNECT with a revoked cookie: %s", resp.Status)
	}
}

func TestConcurrentConnectOneSession(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	token := e.client(nil).login("", "alice", "alice-pw", "")
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tn, _ := e.client(nil).connect(token, false); tn != nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if len(e.be.connects) != 1 || ok.Load() != 4 {
		t.Errorf("4 CONNECTs with one cookie: %d admissions, %d answered", len(e.be.connects), ok.Load())
	}
}

func TestSlowClientDrops(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, QueueLen: 16})
	_, _, s, _ := e.established(false)
	// The client reads nothing: the socket buffers fill, then the queue, then packets are dropped. SendPacket
	// never blocks.
	pkt := make([]byte, 1400)
	start := time.Now()
	dropped := 0
	for range 20000 {
		if !s.SendPacket(pkt) {
			dropped++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("SendPacket took %v for 20000 packets", d)
	}
	if dropped == 0 || s.Stats().Dropped == 0 {
		t.Errorf("nothing dropped for a client that does not read: %+v", s.Stats())
	}
}

func TestDTLSInProcess(t *testing.T) {
	for _, suite := range []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, pskgcm.ID, dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CBC_SHA256} {
		t.Run(fmt.Sprintf("%#04x", uint16(suite)), func(t *testing.T) { testDTLSInProcess(t, suite) })
	}
}

func testDTLSInProcess(t *testing.T, suite dtls.CipherSuiteID) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DTLS: true})
	_, tn, s, _ := e.established(true)
	tn.suite = suite
	if err := tn.startDTLS(e.udpPort); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return s.DTLS() })
	addr := netip.MustParseAddr(tn.hdr.Get("X-CSTP-Address"))
	buf := make([]byte, 2048)
	for i := range 10 {
		req := append([]byte{byte(cstp.Data)}, icmptest.EchoRequest(addr, netip.MustParseAddr("10.8.0.1"), uint16(i), 56)...)
		if _, err := tn.dtls.Write(req); err != nil {
			t.Fatal(err)
		}
		_ = tn.dtls.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := tn.dtls.Read(buf)
		if err != nil || buf[0] != byte(cstp.Data) || n != 85 {
			t.Fatalf("echo over DTLS: %d %v", n, err)
		}
	}
	// A padded DPD (openconnect's MTU probe) comes back the same size.
	probe := append([]byte{byte(cstp.DPDRequest)}, make([]byte, 1300)...)
	_, _ = tn.dtls.Write(probe)
	n, err := tn.dtls.Read(buf)
	if err != nil || buf[0] != byte(cstp.DPDResp) || n != len(probe) {
		t.Fatalf("DPD probe answer: %d %v", n, err)
	}
	// The counters move after the send returns, which can be after the client already has the reply: wait for
	// them to settle (the DPD answer does not go through the writer, so it orders nothing).
	var st anyconnect.SessionStats
	waitFor(t, 2*time.Second, func() bool { st = s.Stats(); return st.DTLSPacketsOut >= 10 })
	name := suite.String()
	if suite == pskgcm.ID {
		name = pskgcm.Name
	}
	if !st.DTLSUp || st.DTLSPacketsIn != 10 || st.DTLSPacketsOut != 10 || st.DTLSCipher != name {
		t.Errorf("stats: %+v", st)
	}
	// AES-GCM and ChaCha20 records bypass pion; other suites stay on its path.
	wantSlow := uint64(0)
	if suite == dtls.TLS_PSK_WITH_AES_128_CBC_SHA256 {
		wantSlow = 1
	}
	if ss := e.srv.Stats(); ss.DTLSSlowPath != wantSlow || ss.DTLSBadRecords != 0 {
		t.Errorf("server stats: %+v", ss)
	}
	// The client falls back to TLS (data over CSTP well after the last DTLS record): the server follows.
	time.Sleep(1100 * time.Millisecond)
	if err := ping(tn, 99); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool { return !s.DTLS() })
	if err := ping(tn, 100); err != nil {
		t.Fatal(err)
	}
	// The down event follows the switch, from the goroutine that saw it: wait for it too.
	var ev []anyconnect.EventKind
	waitFor(t, 2*time.Second, func() bool {
		ev = append(ev, drainEvents(e.be)...)
		return slicesContains(ev, anyconnect.EventDTLSUp) && slicesContains(ev, anyconnect.EventDTLSDown)
	})
}

func TestDTLSUnknownApplicationID(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DTLS: true})
	_, tn, _, _ := e.established(true)
	tn.appID = make([]byte, 32) // not the session's
	if err := tn.startDTLSWithin(e.udpPort, time.Second); err == nil {
		t.Fatal("a handshake with an unknown application id succeeded")
	}
	if st := e.srv.Stats(); st.DTLSUnknownID == 0 || st.DTLSHandshakes != 0 {
		t.Errorf("stats: %+v", st)
	}
	// A wrong key fails the handshake.
	_, tn2, _, _ := e.established(true)
	tn2.psk = make([]byte, 32)
	if err := tn2.startDTLSWithin(e.udpPort, 2*time.Second); err == nil {
		t.Fatal("a handshake with the wrong key succeeded")
	}
}

func TestServerClose(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DTLS: true})
	_, tn, _, _ := e.established(true)
	if err := tn.startDTLS(e.udpPort); err != nil {
		t.Fatal(err)
	}
	_, tn2, _, _ := e.established(false)
	idle := e.client(nil) // a connection between two requests
	idle.init("")
	done := make(chan struct{})
	go func() { e.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for range 2 {
		if dc := e.be.waitDisconnect(t, time.Second); !errors.Is(dc.err, anyconnect.ErrShutdown) {
			t.Errorf("Disconnected: %v", dc.err)
		}
	}
	if p, err := tn2.recvType(cstp.Disconnect, 2*time.Second); err != nil || !strings.Contains(string(p), "shutting down") {
		t.Errorf("clients hear the shutdown: %q %v", p, err)
	}
	e.srv.Close() // idempotent
	if err := e.srv.ServeConn(t.Context(), nilConn{}); !errors.Is(err, anyconnect.ErrClosed) {
		t.Errorf("ServeConn after Close: %v", err)
	}
	e.served.Stop()
	tn.dtls.Close()
	// No goroutine of the engine, nor of a DTLS connection, outlives Close.
	waitFor(t, 5*time.Second, func() bool { return len(goroutines("sslvpn/anyconnect.", "pion/dtls")) == 0 })
}

// goroutines returns the stacks of the goroutines that mention one of the patterns.
func goroutines(patterns ...string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, p := range patterns {
			if strings.Contains(g, p) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// nilConn is a connection that is never used: ServeConn on a closed server returns first.
type nilConn struct{ net.Conn }

func (nilConn) Close() error { return nil }

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle gives counters that move after a send returns up to d to reach cond, and returns either way: the
// caller's own check then reports what was seen.
func settle(d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func drainEvents(b *testBackend) []anyconnect.EventKind {
	var out []anyconnect.EventKind
	for {
		select {
		case ev := <-b.events:
			out = append(out, ev.Kind)
		default:
			return out
		}
	}
}

func slicesContains(s []anyconnect.EventKind, k anyconnect.EventKind) bool {
	for _, v := range s {
		if v == k {
			return true
		}
	}
	return false
}

func TestHandshakeObserver(t *testing.T) {
	pki := newTestPKI(t, "127.0.0.1")
	cfg := pki.serverTLS()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	e := newEngine(t, anyconnect.Config{TLS: cfg, Groups: []anyconnect.Group{certGroup}})
	// No client certificate: with TLS 1.3 the client learns of the refusal on its first read.
	c, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		_, _ = c.Read(make([]byte, 10))
		c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return len(e.be.failed()) >= 1 })
	if err := e.be.failed()[0]; !errors.Is(err, anyconnect.ErrTLS) {
		t.Errorf("HandshakeFailed: %v", err)
	}
	if st := e.srv.Stats(); st.TLSFailures != 1 {
		t.Errorf("stats: %+v", st)
	}
}
