package openvpn_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/internal/enginetest"
	"toride/sslvpn/openvpn"
)

// testPKI is a CA with the server's certificate ("server") and alice's client certificate, generated per test.
type testPKI struct {
	*enginetest.PKI
	clientPEM, keyPEM []byte
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{PKI: enginetest.NewPKI(t, enginetest.Leaf{Serial: 2, CommonName: "server", Usage: x509.ExtKeyUsageServerAuth, Hosts: []string{"server"}})}
	_, p.clientPEM, p.keyPEM = p.Issue(t, enginetest.Leaf{Serial: 3, CommonName: "alice", Usage: x509.ExtKeyUsageClientAuth, Hosts: []string{"alice"}})
	return p
}

// serverTLS is the TLS configuration a concentrator would pass: client certificates required.
func (p *testPKI) serverTLS() *tls.Config { return p.ServerTLS(tls.RequireAndVerifyClientCert) }

// clientTLS is a TLS client configuration for the in-process test client.
func (p *testPKI) clientTLS(t testing.TB) *tls.Config {
	cert, err := tls.X509KeyPair(p.clientPEM, p.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.Pool(), ServerName: "server"}
}

// writeFiles writes the CA and alice's certificate and key into dir, as the stock client's configuration names
// them.
func (p *testPKI) writeFiles(t testing.TB, dir string) {
	t.Helper()
	enginetest.WriteFiles(t, dir, map[string][]byte{"ca.crt": p.CAPEM, "client.crt": p.clientPEM, "client.key": p.keyPEM})
}

// testBackend admits clients with 10.8.0.x addresses and answers ICMP echo requests to the server's tunnel
// address (10.8.0.1) itself.
type testBackend struct {
	gateway netip.Addr
	// refuse, when set, is the reason every client is refused with.
	refuse string
	// otp, when set, is the static-challenge response a client must send.
	otp string

	mu           sync.Mutex
	next         int
	requests     []*openvpn.ConnectRequest
	sessions     []openvpn.Session
	connected    chan openvpn.Session
	disconnected chan error
	failed       chan error
	echoed       chan struct{}
}

func newTestBackend() *testBackend {
	return &testBackend{
		gateway:      netip.MustParseAddr("10.8.0.1"),
		connected:    make(chan openvpn.Session, 16),
		disconnected: make(chan error, 16),
		failed:       make(chan error, 16),
		echoed:       make(chan struct{}, 1024),
	}
}

func (b *testBackend) Connect(ctx context.Context, req *openvpn.ConnectRequest, s openvpn.Session) (*openvpn.Grant, error) {
	b.mu.Lock()
	b.requests = append(b.requests, req)
	refuse, otp := b.refuse, b.otp
	b.mu.Unlock()
	if refuse != "" {
		return nil, errors.New(refuse)
	}
	if otp != "" {
		_, resp, err := openvpn.ParseStaticChallenge(req.Password)
		if err != nil {
			return nil, fmt.Errorf("static challenge required: %v", err)
		}
		if resp != otp {
			return nil, errors.New("wrong one-time password")
		}
	}
	b.mu.Lock()
	b.next++
	addr := netip.AddrFrom4([4]byte{10, 8, 0, byte(1 + b.next)})
	b.sessions = append(b.sessions, s)
	b.mu.Unlock()
	g := &openvpn.Grant{
		Uplink:  &enginetest.EchoUplink{Gateway: b.gateway, Send: s.SendPacket, Echoed: b.echoed},
		Address: netip.PrefixFrom(addr, 24),
		Gateway: b.gateway,
		Routes:  []netip.Prefix{netip.MustParsePrefix("10.50.0.0/24")},
	}
	b.connected <- s
	return g, nil
}

// set changes the refusal reason and the expected OTP.
func (b *testBackend) set(refuse, otp string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuse, b.otp = refuse, otp
}

func (b *testBackend) Disconnected(s openvpn.Session, reason error) {
	b.disconnected <- reason
}

func (b *testBackend) HandshakeFailed(remote netip.AddrPort, tr openvpn.Transport, err error) {
	select {
	case b.failed <- err:
	default:
	}
}

func (b *testBackend) lastRequest() *openvpn.ConnectRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) == 0 {
		return nil
	}
	return b.requests[len(b.requests)-1]
}

// fixedTLSCryptKey is a constant tls-crypt key, so packets captured in interop runs stay valid fuzz seeds.
func fixedTLSCryptKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 256)
	for i := range k {
		k[i] = byte(i*31 + 7)
	}
	return tlsCryptKeyFile(k)
}

func tlsCryptKeyFile(k []byte) []byte {
	var b strings.Builder
	b.WriteString("#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n")
	for i := 0; i < len(k); i += 16 {
		fmt.Fprintf(&b, "%x\n", k[i:i+16])
	}
	b.WriteString("-----END OpenVPN Static key V1-----\n")
	return []byte(b.String())
}

// expectError waits up to d for the backend to report an error on ch (Disconnected or HandshakeFailed, named by
// what) and checks that it is want.
func expectError(t *testing.T, ch <-chan error, want error, what string, d time.Duration) {
	t.Helper()
	select {
	case err := <-ch:
		if !errors.Is(err, want) {
			t.Errorf("%s(%v), want %v", what, err, want)
		}
	case <-time.After(d):
		t.Fatalf("%s was not called within %v", what, d)
	}
}
