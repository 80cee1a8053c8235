package trust

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/pki"
	"toride/sslvpn/pki/pkitest"
)

type fixture struct {
	ca             *pki.CA
	alice, mallory pki.Issued
	store          *Store
}

func newFixture(t *testing.T) *fixture {
	ca, _, _, err := pki.NewCA("Users CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, store: &Store{}}
	f.alice, _ = ca.IssueClient("alice", 0)
	f.mallory, _ = ca.IssueClient("mallory", 0)
	if err := f.store.Set([]*x509.Certificate{ca.Cert}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func chain(t *testing.T, is pki.Issued) []*x509.Certificate {
	c, err := pki.ParseCertificate(is.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{c}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.Verify(chain(t, f.alice)); err != nil {
		t.Fatalf("alice: %v", err)
	}
	// Revoke mallory: a new CRL applies to the next check, alice stays trusted.
	crlText, _ := f.ca.CRL([]pki.Revocation{{Serial: f.mallory.Serial, Time: time.Now()}}, big.NewInt(2), time.Hour)
	crl, _ := pki.ParseCRL([]byte(crlText))
	if err := f.store.Set([]*x509.Certificate{f.ca.Cert}, []*x509.RevocationList{crl}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Verify(chain(t, f.mallory)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("mallory after the CRL: %v", err)
	}
	if !errors.Is(f.store.Revoked([][]*x509.Certificate{chain(t, f.mallory)}), ErrRevoked) || f.store.Revoked([][]*x509.Certificate{chain(t, f.alice)}) != nil {
		t.Fatal("Revoked disagrees with the CRL")
	}
	if _, err := f.store.Verify(chain(t, f.alice)); err != nil {
		t.Fatalf("alice after mallory's revocation: %v", err)
	}
	// Expired.
	f.store.now = func() time.Time { return time.Now().Add(4 * 365 * 24 * time.Hour) }
	if _, err := f.store.Verify(chain(t, f.alice)); err == nil {
		t.Fatal("an expired certificate was accepted")
	}
	f.store.now = nil
	// Another CA's certificate.
	other, _, _, _ := pki.NewCA("Other CA", time.Hour)
	eve, _ := other.IssueClient("eve", 0)
	if _, err := f.store.Verify(chain(t, eve)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("eve: %v", err)
	}
	// A CRL from a stranger is refused, and the old state kept.
	strangerCRL, _ := other.CRL(nil, big.NewInt(1), time.Hour)
	sc, _ := pki.ParseCRL([]byte(strangerCRL))
	if err := f.store.Set([]*x509.Certificate{f.ca.Cert}, []*x509.RevocationList{sc}); err == nil {
		t.Fatal("a CRL signed by an untrusted CA was accepted")
	}
	if _, err := f.store.Verify(chain(t, f.mallory)); !errors.Is(err, ErrRevoked) {
		t.Fatal("a refused Set changed the store")
	}
}

// TestHandshake runs real TLS handshakes: the CertificateRequest lists the CA's name, a trusted client gets in,
// an expired or foreign certificate gets its own TLS alert, and a CA added later is trusted at the next handshake.
func TestHandshake(t *testing.T) {
	f := newFixture(t)
	srvIssued, _ := f.ca.IssueServer("vpn", []string{"vpn"}, nil, time.Hour)
	srvCert, _ := tls.X509KeyPair([]byte(srvIssued.CertPEM), []byte(srvIssued.KeyPEM))
	cfg := f.store.ServerConfig(srvCert, true)

	handshake := func(client pki.Issued) (acceptable [][]byte, err error) {
		return handshake(t, cfg, client.CertPEM, client.KeyPEM)
	}
	acceptable, err := handshake(f.alice)
	if err != nil {
		t.Fatalf("alice's handshake: %v", err)
	}
	if len(acceptable) != 1 || !bytes.Equal(acceptable[0], f.ca.Cert.RawSubject) {
		t.Fatalf("CertificateRequest lists %d CAs, want the users CA", len(acceptable))
	}
	expired, _ := f.ca.IssueClient("old", -time.Minute)
	if _, err := handshake(expired); err == nil || !strings.Contains(err.Error(), "expired certificate") {
		t.Fatalf("expired certificate's handshake: %v", err)
	}
	other, _, _, _ := pki.NewCA("Other CA", time.Hour)
	eve, _ := other.IssueClient("eve", 0)
	if _, err := handshake(eve); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("a foreign certificate's handshake: %v", err)
	}
	if err := f.store.Set([]*x509.Certificate{f.ca.Cert, other.Cert}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(eve); err != nil {
		t.Fatalf("eve after her CA is trusted: %v", err)
	}
}

// handshake runs a real TLS handshake of a client presenting certPEM (leaf first, then any intermediates) against
// cfg, and returns the CAs the server's CertificateRequest named and both sides' errors.
func handshake(t *testing.T, cfg *tls.Config, certPEM, keyPEM string) (acceptable [][]byte, err error) {
	t.Helper()
	cc, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, cfg)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1}) // TLS 1.3: the client learns of a refusal only on its first read
		}
		errc <- err
	}()
	c := tls.Client(b, &tls.Config{InsecureSkipVerify: true, GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		acceptable = cri.AcceptableCAs
		return &cc, nil
	}})
	cerr := c.Handshake()
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	serr := <-errc
	return acceptable, errors.Join(cerr, serr)
}

// chainFixture is a root CA, an intermediate CA under it, and two users of the intermediate.
type chainFixture struct {
	*pkitest.Chain
	bob, carol pki.Issued
}

func newChainFixture(t *testing.T) *chainFixture {
	f := &chainFixture{Chain: pkitest.NewChain(t, "Corp Root CA", "Sales CA", 24*time.Hour)}
	var err error
	if f.bob, err = f.Intermediate.IssueClient("bob", 0); err != nil {
		t.Fatal(err)
	}
	if f.carol, err = f.Intermediate.IssueClient("carol", 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// sent is what a client presents: its certificate, then the intermediate (as OpenVPN's cert file or
// openconnect's --certificate with the chain appended do).
func (f *chainFixture) sent(is pki.Issued) string { return is.CertPEM + f.IntermediatePEM }

func (f *chainFixture) crl(t *testing.T, ca *pki.CA, number int64, validity time.Duration, serials ...*big.Int) *x509.RevocationList {
	t.Helper()
	var revs []pki.Revocation
	for _, s := range serials {
		revs = append(revs, pki.Revocation{Serial: s, Time: time.Now().Add(-time.Minute)})
	}
	text, err := ca.CRL(revs, big.NewInt(number), validity)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := pki.ParseCRL([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func certs(t *testing.T, text string) []*x509.Certificate {
	t.Helper()
	cs, err := pki.ParseCertificates(text)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestRevokedIntermediate: when the root's CRL revokes the intermediate CA, every certificate under it is revoked
// (Verify, and Revoked on the chains a live session kept from its handshake), whether the root alone is trusted
// (the client sends the intermediate) or the intermediate is trusted too; the intermediate's own CRL still
// revokes a single user.
func TestRevokedIntermediate(t *testing.T) {
	f := newChainFixture(t)
	for _, tc := range []struct {
		name string
		cas  []*x509.Certificate
		sent func(pki.Issued) string
	}{
		{"root trusted, intermediate sent", []*x509.Certificate{f.Root.Cert}, f.sent},
		{"root and intermediate trusted, leaf sent", []*x509.Certificate{f.Root.Cert, f.Intermediate.Cert}, func(is pki.Issued) string { return is.CertPEM }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Store{}
			if err := s.Set(tc.cas, nil); err != nil {
				t.Fatal(err)
			}
			leaf := certs(t, tc.sent(f.bob))
			if _, err := s.Verify(leaf); err != nil {
				t.Fatalf("bob before any CRL: %v", err)
			}
			// The chains a session keeps from its handshake.
			inter := x509.NewCertPool()
			for _, c := range leaf[1:] {
				inter.AddCert(c)
			}
			chains, err := leaf[0].Verify(x509.VerifyOptions{Roots: s.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Revoked(chains); err != nil {
				t.Fatalf("bob's chains before any CRL: %v", err)
			}

			if err := s.Set(tc.cas, []*x509.RevocationList{f.crl(t, f.Root, 2, time.Hour, f.IntermediateSerial)}); err != nil {
				t.Fatal(err)
			}
			err = s.Revoked(chains)
			if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "Sales CA") {
				t.Fatalf("bob's live session under the revoked intermediate: Revoked = %v", err)
			}
			if _, err := s.Verify(leaf); !errors.Is(err, ErrRevoked) {
				t.Fatalf("bob's certificate under the revoked intermediate: Verify = %v", err)
			}
		})
	}

	// The intermediate's own CRL, with the intermediate trusted: bob is revoked, carol is not.
	s := &Store{}
	cas := []*x509.Certificate{f.Root.Cert, f.Intermediate.Cert}
	if err := s.Set(cas, []*x509.RevocationList{f.crl(t, f.Intermediate, 1, time.Hour, f.bob.Serial)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(certs(t, f.sent(f.bob))); !errors.Is(err, ErrRevoked) {
		t.Fatalf("bob on the intermediate's CRL: %v", err)
	}
	if _, err := s.Verify(certs(t, f.sent(f.carol))); err != nil {
		t.Fatalf("carol: %v", err)
	}
}

// TestHandshakeRefusesRevokedCA: a client whose certificate is under an intermediate the root's CRL revokes is
// refused in the TLS handshake itself, with the reason in the server's error; a revoked leaf is still let through
// the handshake, for the protocol's admission to refuse it in words.
func TestHandshakeRefusesRevokedCA(t *testing.T) {
	f := newChainFixture(t)
	srvIssued, _ := f.Root.IssueServer("vpn", []string{"vpn"}, nil, time.Hour)
	srvCert, _ := tls.X509KeyPair([]byte(srvIssued.CertPEM), []byte(srvIssued.KeyPEM))
	s := &Store{}
	if err := s.Set([]*x509.Certificate{f.Root.Cert}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := s.ServerConfig(srvCert, true)
	if _, err := handshake(t, cfg, f.sent(f.bob), f.bob.KeyPEM); err != nil {
		t.Fatalf("bob before any CRL: %v", err)
	}
	if err := s.Set([]*x509.Certificate{f.Root.Cert}, []*x509.RevocationList{f.crl(t, f.Root, 2, time.Hour, f.IntermediateSerial)}); err != nil {
		t.Fatal(err)
	}
	_, err := handshake(t, cfg, f.sent(f.bob), f.bob.KeyPEM)
	if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "bad certificate") || !strings.Contains(err.Error(), "Sales CA") {
		t.Fatalf("bob under the revoked intermediate got through the handshake or was refused without the reason: %v", err)
	}

	// A revoked leaf: the handshake succeeds; admission (Revoked) refuses.
	cas := []*x509.Certificate{f.Root.Cert, f.Intermediate.Cert}
	if err := s.Set(cas, []*x509.RevocationList{f.crl(t, f.Intermediate, 1, time.Hour, f.carol.Serial)}); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, cfg, f.sent(f.carol), f.carol.KeyPEM); err != nil {
		t.Fatalf("carol's revoked leaf must reach admission, not fail the handshake: %v", err)
	}
}

// TestStaleCRL: a CRL past its next update is reported stale, and stays in force: what it revokes stays revoked,
// and a certificate it does not list is accepted.
func TestStaleCRL(t *testing.T) {
	f := newFixture(t)
	crlText, err := f.ca.CRL([]pki.Revocation{{Serial: f.mallory.Serial, Time: time.Now()}}, big.NewInt(7), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := pki.ParseCRL([]byte(crlText))
	if err := f.store.Set([]*x509.Certificate{f.ca.Cert}, []*x509.RevocationList{crl}); err != nil {
		t.Fatal(err)
	}
	if infos := f.store.CRLs(); len(infos) != 1 || infos[0].Stale || infos[0].Number != "7" || infos[0].Revoked != 1 {
		t.Fatalf("a fresh CRL: %+v", infos)
	}
	f.store.now = func() time.Time { return crl.NextUpdate.Add(time.Second) }
	if infos := f.store.CRLs(); len(infos) != 1 || !infos[0].Stale {
		t.Fatalf("a CRL past its next update is not reported stale: %+v", infos)
	}
	if _, err := f.store.Verify(chain(t, f.mallory)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("mallory on a stale CRL: %v", err)
	}
	if _, err := f.store.Verify(chain(t, f.alice)); err != nil {
		t.Fatalf("alice, not on the stale CRL: %v", err)
	}
}
