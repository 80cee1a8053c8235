package anyconnect_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/internal/enginetest"
)

// testPKI is a CA with the server's certificate ("vpn.test", valid for the server's address), generated per test.
type testPKI struct{ *enginetest.PKI }

func newTestPKI(t testing.TB, serverIP string) *testPKI {
	t.Helper()
	return &testPKI{enginetest.NewPKI(t, enginetest.Leaf{Serial: 2, CommonName: "vpn.test", Usage: x509.ExtKeyUsageServerAuth, Hosts: []string{serverIP}})}
}

// serverTLS is the configuration a concentrator would pass: a client certificate verified if given.
func (p *testPKI) serverTLS() *tls.Config { return p.ServerTLS(tls.VerifyClientCertIfGiven) }

// groupNet is what the test backend gives a group's clients: 10.8.<third>.x/24 and the routes.
type groupNet struct {
	third  byte
	routes []netip.Prefix
}

// testBackend checks passwords and a fixed one-time password, gives addresses per group (the same one again
// to the same user), and answers ICMP echo requests to the group's gateway (10.8.<third>.1) itself.
type testBackend struct {
	mu           sync.Mutex
	users        map[string]string // user → password
	otp          string
	nets         map[string]groupNet
	refuse       string
	refuseAgain  string // CheckReconnect refuses with this
	rechecks     int    // CheckReconnect calls
	fullTunnel   bool
	failures     []error
	next         map[string]byte
	auths        []*anyconnect.AuthRequest
	connects     []*anyconnect.ConnectRequest
	sessions     []anyconnect.Session
	connected    chan anyconnect.Session
	disconnected chan disconnect
	events       chan anyconnect.Event
	echoed       chan struct{}
}

type disconnect struct {
	s   anyconnect.Session
	err error
}

func newTestBackend() *testBackend {
	return &testBackend{
		users:        map[string]string{"alice": "alice-pw", "bob": "bob-pw"},
		otp:          "424242",
		nets:         map[string]groupNet{},
		next:         map[string]byte{},
		connected:    make(chan anyconnect.Session, 16),
		disconnected: make(chan disconnect, 16),
		events:       make(chan anyconnect.Event, 256),
		echoed:       make(chan struct{}, 4096),
	}
}

var errBadLogin = errors.New("Login failed: wrong user name, password or one-time password")

func (b *testBackend) Authenticate(ctx context.Context, req *anyconnect.AuthRequest) (*anyconnect.Identity, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.auths = append(b.auths, req)
	user := req.Username
	if req.Certificate != nil {
		if user == "" {
			user = req.Certificate.Subject.CommonName
		} else if user != req.Certificate.Subject.CommonName {
			return nil, errors.New("the certificate is issued to someone else")
		}
	}
	if _, known := b.users[user]; user == "" || (!known && req.Certificate == nil) {
		return nil, errBadLogin
	}
	if req.Password != "" && b.users[user] != req.Password {
		return nil, errBadLogin
	}
	if req.Password == "" && req.Certificate == nil && !req.HasOTP {
		return nil, errBadLogin
	}
	if req.HasOTP && req.OTP != b.otp {
		return nil, errBadLogin
	}
	return &anyconnect.Identity{User: user}, nil
}

func (b *testBackend) Connect(ctx context.Context, req *anyconnect.ConnectRequest, s anyconnect.Session) (*anyconnect.Grant, error) {
	b.mu.Lock()
	b.connects = append(b.connects, req)
	if b.refuse != "" {
		msg := b.refuse
		b.mu.Unlock()
		return nil, errors.New(msg)
	}
	gn, ok := b.nets[req.Group]
	if !ok {
		gn = groupNet{third: 0}
	}
	b.next[req.Group]++
	addr := netip.AddrFrom4([4]byte{10, 8, gn.third, 1 + b.next[req.Group]})
	gw := netip.AddrFrom4([4]byte{10, 8, gn.third, 1})
	b.sessions = append(b.sessions, s)
	full := b.fullTunnel
	b.mu.Unlock()
	g := &anyconnect.Grant{Uplink: &enginetest.EchoUplink{Gateway: gw, Send: s.SendPacket, Echoed: b.echoed}, Address: netip.PrefixFrom(addr, 24), Routes: gn.routes,
		DNS: []netip.Addr{gw}, DefaultDomain: "corp.test", Banner: "Welcome to the test VPN", FullTunnel: full}
	b.connected <- s
	return g, nil
}

func (b *testBackend) CheckReconnect(ctx context.Context, req *anyconnect.ConnectRequest, s anyconnect.Session) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rechecks++
	if b.refuseAgain != "" {
		return errors.New(b.refuseAgain)
	}
	return nil
}

func (b *testBackend) Disconnected(s anyconnect.Session, reason error) {
	b.disconnected <- disconnect{s, reason}
}

func (b *testBackend) HandshakeFailed(remote netip.AddrPort, err error) {
	b.mu.Lock()
	b.failures = append(b.failures, err)
	b.mu.Unlock()
}

func (b *testBackend) failed() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]error(nil), b.failures...)
}

func (b *testBackend) SessionEvent(s anyconnect.Session, ev anyconnect.Event) {
	select {
	case b.events <- ev:
	default:
	}
}

func (b *testBackend) authCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.auths)
}

func (b *testBackend) lastConnect() *anyconnect.ConnectRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.connects) == 0 {
		return nil
	}
	return b.connects[len(b.connects)-1]
}

// waitDisconnect waits for the backend to hear about a session's end.
func (b *testBackend) waitDisconnect(t testing.TB, d time.Duration) disconnect {
	t.Helper()
	select {
	case dc := <-b.disconnected:
		return dc
	case <-time.After(d):
		t.Fatalf("no Disconnected within %v", d)
	}
	return disconnect{}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
