package anyconnect_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/internal/enginetest"
	"toride/tests/lab"
	"toride/tests/occlient"
)

// connectedSession waits for the backend to admit a session.
func (e *interop) connectedSession(d time.Duration) anyconnect.Session {
	e.t.Helper()
	select {
	case s := <-e.be.connected:
		return s
	case <-time.After(d):
		e.t.Fatalf("no session admitted within %v", d)
	}
	return nil
}

func TestInteropPasswordOTP(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true, OTP: true}}, DTLS: true})
	c := e.openconnect("alice-pw\n"+e.be.otp+"\n", "-u", "alice", "--passwd-on-stdin")
	env := c.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	t.Logf("password+OTP: login to ping %v, address %s", time.Since(c.Started).Round(time.Millisecond), env["INTERNAL_IP4_ADDRESS"])
	if n := e.be.authCount(); n != 1 {
		t.Errorf("Authenticate called %d times, want 1 (one attempt with every factor)", n)
	}
	a := e.be.auths[0]
	if a.Username != "alice" || a.Password != "alice-pw" || !a.HasOTP || a.OTP != e.be.otp || a.Certificate != nil {
		t.Errorf("AuthRequest = user %q password %q otp %q/%v cert %v", a.Username, a.Password, a.OTP, a.HasOTP, a.Certificate != nil)
	}
	if !strings.Contains(c.Proc.Output(), `<auth id="challenge">`) {
		t.Error("the client never saw the OTP challenge form")
	}
}

func TestInteropWrongOTPShowsFormAgain(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true, OTP: true}}})
	c := e.openconnect("alice-pw\n000000\n", "-u", "alice", "--passwd-on-stdin")
	// The failed login comes back as the login form with the backend's message; openconnect prints it and,
	// with nothing more on stdin, gives up.
	c.waitOutput(errBadLogin.Error(), 15*time.Second)
	if err := c.Proc.WaitExit(lab.Within(t, 10*time.Second)); err != nil {
		t.Fatalf("openconnect did not give up: %v", err)
	}
	if st := e.srv.Stats(); st.LoginsFailed != 1 || st.LoginsOK != 0 || st.Sessions != 0 {
		t.Errorf("stats after a wrong OTP: %+v", st)
	}
}

func TestInteropCertificateOnly(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "devices", Certificate: true}}, DTLS: true})
	cert, key := e.pki.ClientFiles(t, e.lab.Dir, 10, "alice")
	c := e.openconnect("", "-c", cert, "-k", key)
	c.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	t.Logf("certificate only: login to ping %v", time.Since(c.Started).Round(time.Millisecond))
	a := e.be.auths[0]
	if a.Certificate == nil || a.Certificate.Subject.CommonName != "alice" || a.Username != "" || a.HasOTP {
		t.Errorf("AuthRequest: cert %v user %q otp %v", a.Certificate, a.Username, a.HasOTP)
	}
	if s := e.connectedSession(time.Second); s.Identity().User != "alice" {
		t.Errorf("session user %q", s.Identity().User)
	}
}

func TestInteropCertificateOTP(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "devices", Certificate: true, OTP: true}}, DTLS: true})
	cert, key := e.pki.ClientFiles(t, e.lab.Dir, 10, "alice")
	c := e.openconnect(e.be.otp+"\n", "-c", cert, "-k", key, "--passwd-on-stdin")
	c.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	t.Logf("certificate+OTP: login to ping %v", time.Since(c.Started).Round(time.Millisecond))
	a := e.be.auths[0]
	if a.Certificate == nil || !a.HasOTP || a.OTP != e.be.otp || a.Password != "" {
		t.Errorf("AuthRequest: cert %v otp %q/%v password %q", a.Certificate != nil, a.OTP, a.HasOTP, a.Password)
	}
}

func TestInteropCertificateRequiredButMissing(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "devices", Certificate: true}}})
	c := e.openconnect("")
	c.waitOutput("requires a client certificate", 15*time.Second)
	<-c.Proc.Done()
	if n := e.be.authCount(); n != 0 {
		t.Errorf("Authenticate called %d times for a login without its certificate", n)
	}
}

func TestInteropGroupSelection(t *testing.T) {
	e := newInterop(t, anyconnect.Config{DTLS: true, DefaultGroup: "sales", Groups: []anyconnect.Group{
		{Name: "sales", Label: "Sales", Password: true, ProfileXML: []byte("<AnyConnectProfile/>")},
		{Name: "eng", Label: "Engineering", Password: true, OTP: true},
	}})
	e.be.nets["sales"] = groupNet{third: 1, routes: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/24")}}
	e.be.nets["eng"] = groupNet{third: 2, routes: []netip.Prefix{netip.MustParsePrefix("10.60.0.0/24"), netip.MustParsePrefix("172.16.0.0/12")}}

	eng := e.openconnect("bob-pw\n"+e.be.otp+"\n", "-u", "bob", "--passwd-on-stdin", "--authgroup=Engineering")
	envEng := eng.waitConnected(15 * time.Second)
	sales := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin", "--authgroup=Sales")
	envSales := sales.waitConnected(15 * time.Second)

	if got := envEng["INTERNAL_IP4_ADDRESS"]; !strings.HasPrefix(got, "10.8.2.") {
		t.Errorf("Engineering address %q, want 10.8.2.x", got)
	}
	if got := envSales["INTERNAL_IP4_ADDRESS"]; !strings.HasPrefix(got, "10.8.1.") {
		t.Errorf("Sales address %q, want 10.8.1.x", got)
	}
	if got := occlient.Routes(envEng); !slices_equal(got, []string{"10.8.2.0/24", "10.60.0.0/24", "172.16.0.0/12"}) {
		t.Errorf("Engineering split routes %v", got)
	}
	if got := occlient.Routes(envSales); !slices_equal(got, []string{"10.8.1.0/24", "10.50.0.0/24"}) {
		t.Errorf("Sales split routes %v", got)
	}
	e.ping("10.8.2.1", 10*time.Second)
	e.ping("10.8.1.1", 10*time.Second)
	// The routes are installed in the client's namespace through the tunnels.
	routes := e.lab.Client.MustRun("ip", "route")
	for _, want := range []string{"10.60.0.0/24 dev tun", "10.50.0.0/24 dev tun", "172.16.0.0/12 dev tun"} {
		if !strings.Contains(routes, want) {
			t.Errorf("client routes lack %q:\n%s", want, routes)
		}
	}
	groups := map[string]string{}
	for _, a := range e.be.auths {
		groups[a.Username] = a.Group
	}
	if groups["bob"] != "eng" || groups["alice"] != "sales" {
		t.Errorf("logins by group: %v", groups)
	}
	// The group list showed both profiles, the default selected.
	if out := sales.Proc.Output(); !strings.Contains(out, `<option value="sales" selected="true">Sales</option>`) ||
		!strings.Contains(out, `<option value="eng">Engineering</option>`) {
		t.Errorf("group list not as expected:\n%s", out)
	}
	// The Sales login announced its profile.
	if out := sales.Proc.Output(); !regexp.MustCompile(`<uri>/profiles/sales.xml</uri>\s*<\s*<hash type="sha1">[0-9a-f]{40}</hash>`).MatchString(out) {
		t.Errorf("no profile manifest in the Sales login:\n%s", out)
	}
}

// slices_equal compares two route lists as sets: openconnect hands them to its script in reverse order.
func slices_equal(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestInteropDTLS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		suites []uint16 // nil: what the server offers by default
		want   string
	}{
		{"default", nil, "TLS_PSK_WITH_AES_256_GCM_SHA384"},
		{"chacha20", []uint16{0xccab}, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"},
		{"aes128gcm", []uint16{0x00a8}, "TLS_PSK_WITH_AES_128_GCM_SHA256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newInteropWith(t, nil, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true},
				func(s *anyconnect.Server) {
					if tc.suites != nil {
						anyconnect.SetDTLSSuites(s, tc.suites...)
					}
				})
			c := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
			c.waitOutput("Established DTLS connection", 15*time.Second)
			c.waitConnected(5 * time.Second)
			s := e.connectedSession(time.Second)
			e.ping("10.8.0.1", 10*time.Second)
			if _, err := e.lab.Client.Run("ping", "-n", "-q", "-c", "20", "-i", "0.01", "-s", "1300", "-W", "2", "10.8.0.1"); err != nil {
				t.Fatal(err)
			}
			settle(2*time.Second, func() bool { st := s.Stats(); return st.DTLSPacketsIn >= 20 && st.DTLSPacketsOut >= 20 })
			st, sst := s.Stats(), e.srv.Stats()
			if !st.DTLSUp || st.DTLSPacketsIn < 20 || st.DTLSPacketsOut < 20 || st.DTLSHandshakes != 1 || st.DTLSCipher != tc.want {
				t.Errorf("data did not move over DTLS with %s: %+v", tc.want, st)
			}
			// The records went through the engine's own record layer, and every one authenticated.
			if sst.DTLSHandshakes != 1 || sst.DTLSSlowPath != 0 || sst.DTLSBadRecords != 0 {
				t.Errorf("server stats: %+v", sst)
			}
		})
	}
}

// blockUDP drops UDP to and from port 443 with nftables in the client namespace. With outgoing true the
// client's own sends fail at once (a local firewall); without, only what comes back is dropped, as when a
// network in between swallows UDP: the client learns of it by its dead-peer detection alone.
func (e *interop) blockUDP(outgoing bool) {
	e.t.Helper()
	cmds := [][]string{
		{"add", "table", "inet", "acblock"},
		{"add", "chain", "inet", "acblock", "in", "{ type filter hook input priority 0 ; }"},
		{"add", "rule", "inet", "acblock", "in", "udp", "sport", "443", "drop"},
	}
	if outgoing {
		cmds = append(cmds,
			[]string{"add", "chain", "inet", "acblock", "out", "{ type filter hook output priority 0 ; }"},
			[]string{"add", "rule", "inet", "acblock", "out", "udp", "dport", "443", "drop"})
	}
	for _, args := range cmds {
		e.lab.Client.MustRun("nft", args...)
	}
}

func TestInteropUDPBlocked(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true})
	e.blockUDP(true)
	c := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	c.waitConnected(15 * time.Second)
	s := e.connectedSession(time.Second)
	e.ping("10.8.0.1", 15*time.Second)
	t.Logf("UDP blocked: login to ping %v", time.Since(c.Started).Round(time.Millisecond))
	if _, err := e.lab.Client.Run("ping", "-n", "-q", "-c", "10", "-i", "0.05", "-W", "2", "10.8.0.1"); err != nil {
		t.Fatal(err)
	}
	settle(2*time.Second, func() bool { st := s.Stats(); return st.PacketsIn >= 10 && st.PacketsOut >= 10 })
	st := s.Stats()
	if st.DTLSUp || st.DTLSPacketsIn != 0 || st.PacketsIn < 10 || st.PacketsOut < 10 {
		t.Errorf("with UDP blocked, data should move over TLS: %+v", st)
	}
	if strings.Contains(c.Proc.Output(), "Established DTLS") {
		t.Error("DTLS came up through the block")
	}
}

func TestInteropUDPBlockedAfterDTLS(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true, DPD: 2 * time.Second})
	c := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	c.waitOutput("Established DTLS connection", 15*time.Second)
	c.waitConnected(5 * time.Second)
	s := e.connectedSession(time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	before := s.Stats()
	if !before.DTLSUp || before.DTLSPacketsIn == 0 {
		t.Fatalf("DTLS not carrying data before the block: %+v", before)
	}
	e.blockUDP(false)
	blocked := time.Now()
	// openconnect's DTLS dead-peer detection notices, falls back to TLS; the server follows the client's data.
	e.ping("10.8.0.1", 30*time.Second)
	t.Logf("UDP blocked after DTLS: traffic back over TLS after %v", time.Since(blocked).Round(time.Millisecond))
	c.waitOutput("DTLS Dead Peer Detection detected dead peer", 5*time.Second)
	mid := s.Stats()
	if _, err := e.lab.Client.Run("ping", "-n", "-q", "-c", "10", "-i", "0.05", "-W", "2", "10.8.0.1"); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.PacketsIn-mid.PacketsIn < 10 || after.DTLSPacketsIn != mid.DTLSPacketsIn || after.DTLSPacketsOut != mid.DTLSPacketsOut {
		t.Errorf("after the fallback data should move over TLS: %+v -> %+v", mid, after)
	}
	if e.srv.Stats().Sessions != 1 || len(e.be.disconnected) != 0 {
		t.Error("the session was dropped by the fallback")
	}
}

func TestInteropReconnectAfterConnectionLoss(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true})
	c := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	env := c.waitConnected(15 * time.Second)
	s := e.connectedSession(time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	e.cutConnections()
	cut := time.Now()
	c.waitOutputCount("Got CONNECT response", 2, 20*time.Second)
	e.ping("10.8.0.1", 20*time.Second)
	t.Logf("reconnect: traffic back %v after the TCP connection was cut", time.Since(cut).Round(time.Millisecond))
	st := s.Stats()
	if st.Reconnects != 1 {
		t.Errorf("session reconnects = %d, want 1", st.Reconnects)
	}
	if n := e.be.authCount(); n != 1 {
		t.Errorf("Authenticate called %d times; a reconnect needs no login", n)
	}
	if len(e.be.connects) != 1 || len(e.be.disconnected) != 0 || e.srv.Stats().Sessions != 1 {
		t.Errorf("the reconnect made a new session: connects %d, disconnects %d", len(e.be.connects), len(e.be.disconnected))
	}
	if strings.Contains(c.Proc.Output(), "Reconnect gave different") {
		t.Error("the client got a different address on reconnect")
	}
	_ = env
}

// authenticate runs openconnect --authenticate and returns the cookie it printed.
func (e *interop) authenticate(stdin string, args ...string) string {
	e.t.Helper()
	cookie, err := e.openconnect(stdin, append(args, "--authenticate")...).Cookie(lab.Within(e.t, 15*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	return cookie
}

func TestInteropCookieRestartKeepsSession(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true})
	cookie := e.authenticate("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	c1 := e.openconnect(cookie+"\n", "--cookie-on-stdin")
	env1 := c1.waitConnected(15 * time.Second)
	s := e.connectedSession(time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	// A client that dies without saying goodbye leaves its session waiting for a reconnect.
	c1.Proc.Kill()
	e.waitDetached(s, 10*time.Second)
	c2 := e.openconnect(cookie+"\n", "--cookie-on-stdin")
	env2 := c2.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	if env1["INTERNAL_IP4_ADDRESS"] != env2["INTERNAL_IP4_ADDRESS"] {
		t.Errorf("address changed across the restart: %s -> %s", env1["INTERNAL_IP4_ADDRESS"], env2["INTERNAL_IP4_ADDRESS"])
	}
	if s.Stats().Reconnects != 1 || len(e.be.connects) != 1 || len(e.be.disconnected) != 0 {
		t.Errorf("the restart with the cookie was not the same session: %+v, connects %d", s.Stats(), len(e.be.connects))
	}
}

// waitOutputCount waits until the client has printed substr n times.
func (c *client) waitOutputCount(substr string, n int, d time.Duration) {
	c.e.t.Helper()
	err := lab.WaitFor(lab.Within(c.e.t, d), 20*time.Millisecond, func() error {
		if strings.Count(c.Proc.Output(), substr) >= n {
			return nil
		}
		return fmt.Errorf("%q printed fewer than %d times", substr, n)
	})
	if err != nil {
		c.e.t.Fatalf("%v\n---- openconnect output ----\n%s", err, c.Proc.Output())
	}
}

// waitDetached waits until the server sees s without a TLS connection.
func (e *interop) waitDetached(s anyconnect.Session, d time.Duration) {
	e.t.Helper()
	err := lab.WaitFor(lab.Within(e.t, d), 20*time.Millisecond, func() error {
		if e.srv.Stats().Detached == 1 {
			return nil
		}
		return errors.New("session still attached")
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestInteropClosedSessionCannotReturn(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true})
	cookie := e.authenticate("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	c1 := e.openconnect(cookie+"\n", "--cookie-on-stdin")
	c1.waitConnected(15 * time.Second)
	s := e.connectedSession(time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	s.Close("certificate revoked by the administrator")
	c1.waitOutput("certificate revoked by the administrator", 10*time.Second)
	if err := c1.Proc.WaitExit(lab.Within(t, 10*time.Second)); err != nil {
		t.Fatalf("openconnect did not exit after the server cut its session: %v", err)
	}
	dc := e.be.waitDisconnect(t, 5*time.Second)
	if !errors.Is(dc.err, anyconnect.ErrKilled) {
		t.Errorf("Disconnected reason %v, want ErrKilled", dc.err)
	}
	c2 := e.openconnect(cookie+"\n", "--cookie-on-stdin")
	if err := c2.Proc.WaitExit(lab.Within(t, 15*time.Second)); err != nil {
		t.Fatalf("openconnect with a revoked cookie did not give up: %v", err)
	}
	if !strings.Contains(c2.Proc.Output(), "401") {
		t.Errorf("expected a 401 for the old cookie:\n%s", c2.Proc.Output())
	}
	if len(e.be.connects) != 1 || e.srv.Stats().BadCookies == 0 {
		t.Errorf("the revoked cookie got in: connects %d, stats %+v", len(e.be.connects), e.srv.Stats())
	}
}

func TestInteropClientExitEndsSession(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true})
	c := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	c.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	c.Proc.Stop() // SIGTERM: openconnect says goodbye
	dc := e.be.waitDisconnect(t, 10*time.Second)
	if !errors.Is(dc.err, anyconnect.ErrClientExit) {
		t.Errorf("Disconnected reason %v, want ErrClientExit", dc.err)
	}
	if st := e.srv.Stats(); st.Sessions != 0 || st.Cookies != 0 || st.BuffersInFlight != 0 {
		t.Errorf("after the client left: %+v", st)
	}
}

// TestInteropTLS12: over TLS 1.2 openconnect 9.01 (GnuTLS) negotiates no extended master secret, so the TLS
// exporter PSK-NEGOTIATE keys DTLS with is unsafe (triple handshake) and crypto/tls refuses it. The server then
// offers no DTLS and the tunnel runs over TLS.
func TestInteropTLS12(t *testing.T) {
	pki := newTestPKI(t, enginetest.ServerIP)
	cfg := pki.serverTLS()
	cfg.MaxVersion = tls.VersionTLS12
	e := newInteropPKI(t, pki, anyconnect.Config{TLS: cfg, Groups: []anyconnect.Group{{Name: "staff", Password: true}}, DTLS: true})
	c := e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	c.waitConnected(15 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	out := c.Proc.Output()
	if !strings.Contains(out, "(TLS1.2)") || strings.Contains(out, "X-DTLS-App-ID") {
		t.Errorf("want TLS 1.2 without a DTLS offer:\n%s", out)
	}
	if st := e.srv.Stats(); st.DTLSNoExporter != 1 {
		t.Errorf("stats: %+v", st)
	}
}
