package openvpn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/internal/icmptest"
	"toride/sslvpn/openvpn"
)

// testPKI is a CA with one server and one client certificate, generated per test.
type testPKI struct {
	caCert            *x509.Certificate
	caKey             *ecdsa.PrivateKey
	caPEM             []byte
	server            tls.Certificate
	clientPEM, keyPEM []byte
	clientCert        *x509.Certificate
	// issue makes another client certificate (serial, common name, optional NotAfter) in PEM.
	issue func(serial int64, cn string, notAfter time.Time) (certPEM, keyPEM []byte)
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "toride test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	issue := func(serial int64, cn string, eku x509.ExtKeyUsage) (*x509.Certificate, []byte, []byte, *ecdsa.PrivateKey) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku}, DNSNames: []string{cn},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &k.PublicKey, p.caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), k
	}
	sc, scPEM, skPEM, _ := issue(2, "server", x509.ExtKeyUsageServerAuth)
	_ = sc
	p.server, err = tls.X509KeyPair(scPEM, skPEM)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientPEM, p.keyPEM, _ = issue(3, "alice", x509.ExtKeyUsageClientAuth)
	p.issue = func(serial int64, cn string, notAfter time.Time) ([]byte, []byte) {
		c, certPEM, keyPEM, _ := issue(serial, cn, x509.ExtKeyUsageClientAuth)
		if notAfter.IsZero() {
			return certPEM, keyPEM
		}
		// Re-sign with the requested validity.
		tmpl := *c
		tmpl.NotBefore, tmpl.NotAfter = notAfter.Add(-48*time.Hour), notAfter
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, p.caCert, &k.PublicKey, p.caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	}
	return p
}

// serverTLS is the TLS configuration a concentrator would pass: client certificates required.
func (p *testPKI) serverTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
}

// clientTLS is a TLS client configuration for the in-process test client.
func (p *testPKI) clientTLS(t testing.TB) *tls.Config {
	cert, err := tls.X509KeyPair(p.clientPEM, p.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "server"}
}

func (p *testPKI) writeFiles(t testing.TB, dir string) {
	t.Helper()
	for name, data := range map[string][]byte{"ca.crt": p.caPEM, "client.crt": p.clientPEM, "client.key": p.keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
		Uplink:  &echoUplink{b: b, s: s, gw: b.gateway},
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

// echoUplink answers ICMP echo requests addressed to gw; other packets are counted and dropped.
type echoUplink struct {
	b  *testBackend
	s  openvpn.Session
	gw netip.Addr
}

func (u *echoUplink) WritePacket(pkt []byte) error {
	reply, ok := icmptest.EchoReply(pkt, u.gw)
	if !ok {
		return nil
	}
	if u.s.SendPacket(reply) {
		select {
		case u.b.echoed <- struct{}{}:
		default:
		}
	}
	return nil
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
