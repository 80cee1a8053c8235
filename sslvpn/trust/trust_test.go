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
	if !f.store.Revoked(chain(t, f.mallory)[0]) || f.store.Revoked(chain(t, f.alice)[0]) {
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
		cc, _ := tls.X509KeyPair([]byte(client.CertPEM), []byte(client.KeyPEM))
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
