package anyconnect_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/internal/icmptest"
)

// testPKI is a CA with a server certificate and client certificates, generated per test.
type testPKI struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	server tls.Certificate
	pin    string // openconnect's pin-sha256:... of the server key

	serverCertPEM, serverKeyPEM []byte
}

func newTestPKI(t testing.TB, serverIP string) *testPKI {
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
	cert, certPEM, keyPEM := p.issue(t, 2, "vpn.test", x509.ExtKeyUsageServerAuth, serverIP)
	p.serverCertPEM, p.serverKeyPEM = certPEM, keyPEM
	p.server, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	p.pin = "pin-sha256:" + base64.StdEncoding.EncodeToString(sum[:])
	return p
}

func (p *testPKI) issue(t testing.TB, serial int64, cn string, eku x509.ExtKeyUsage, ip string) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}
	if ip != "" {
		tmpl.IPAddresses = []net.IP{net.ParseIP(ip)}
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
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// clientFiles issues a client certificate for cn and writes it and its key into dir.
func (p *testPKI) clientFiles(t testing.TB, dir, cn string, serial int64) (certFile, keyFile string) {
	t.Helper()
	_, c, k := p.issue(t, serial, cn, x509.ExtKeyUsageClientAuth, "")
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// clientCert issues a client certificate for in-process clients.
func (p *testPKI) clientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	_, c, k := p.issue(t, 100, cn, x509.ExtKeyUsageClientAuth, "")
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// serverTLS is the configuration a concentrator would pass: a client certificate verified if given.
func (p *testPKI) serverTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool,
		MinVersion: tls.VersionTLS12}
}

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
	g := &anyconnect.Grant{Uplink: &echoUplink{b: b, s: s, gw: gw}, Address: netip.PrefixFrom(addr, 24), Routes: gn.routes,
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

// echoUplink answers ICMP echo requests addressed to gw; other packets are dropped.
type echoUplink struct {
	b  *testBackend
	s  anyconnect.Session
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

var _ = fmt.Sprint
