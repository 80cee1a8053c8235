package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

func TestIssueAndBundle(t *testing.T) {
	ca, caPEM, caKey, err := NewCA("Toride Users CA", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(caPEM, caKey); err != nil {
		t.Fatalf("the CA does not parse back: %v", err)
	}
	cl, err := ca.IssueClient("alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ParseCertificate(cl.CertPEM)
	if cert.Subject.CommonName != "alice" || cert.SerialNumber.Cmp(cl.Serial) != 0 {
		t.Fatalf("client cert %s serial %v", cert.Subject, cert.SerialNumber)
	}
	if d := cert.NotAfter.Sub(time.Now()); d < ClientValidity-time.Hour || d > ClientValidity {
		t.Fatalf("client certificate valid for %v, want about 3 years", d)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client cert does not verify for client auth: %v", err)
	}
	srv, err := ca.IssueServer("vpn.example.net", []string{"vpn.example.net"}, []netip.Addr{netip.MustParseAddr("203.0.113.1")}, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := ParseCertificate(srv.CertPEM)
	if sc.KeyUsage == 0 || len(sc.ExtKeyUsage) != 1 || sc.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("server cert usages %v %v: remote-cert-tls server needs a key usage and serverAuth", sc.KeyUsage, sc.ExtKeyUsage)
	}
	p12, err := PKCS12(cl.CertPEM, cl.KeyPEM, caPEM, "pw")
	if err != nil {
		t.Fatal(err)
	}
	_, got, cas, err := pkcs12.DecodeChain(p12, "pw")
	if err != nil || got.SerialNumber.Cmp(cl.Serial) != 0 || len(cas) != 1 {
		t.Fatalf("PKCS#12 does not decode back: %v", err)
	}
	if _, _, _, err := pkcs12.DecodeChain(p12, "wrong"); err == nil {
		t.Fatal("PKCS#12 opens with a wrong password")
	}
}

func TestCRLInPEMAndDER(t *testing.T) {
	ca, _, _, _ := NewCA("CA", 24*time.Hour)
	text, err := ca.CRL([]Revocation{{Serial: big.NewInt(42), Time: time.Now()}}, big.NewInt(7), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(text))
	for name, data := range map[string][]byte{"PEM": []byte(text), "DER": block.Bytes} {
		crl, err := ParseCRL(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if crl.Number.Int64() != 7 || len(crl.RevokedCertificateEntries) != 1 || crl.CheckSignatureFrom(ca.Cert) != nil {
			t.Fatalf("%s: CRL %+v", name, crl)
		}
		back, _, err := CRLPEM(data)
		if err != nil || back != text {
			t.Fatalf("%s: CRLPEM gave %q %v", name, back, err)
		}
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if _, err := ParseCRL(bad); !errors.Is(err, ErrNotCRL) {
			t.Errorf("ParseCRL(%q) = %v, want ErrNotCRL", bad, err)
		}
	}
}

func FuzzParseCRL(f *testing.F) {
	ca, _, _, _ := NewCA("CA", time.Hour)
	text, _ := ca.CRL([]Revocation{{Serial: big.NewInt(1), Time: time.Now()}}, big.NewInt(1), time.Hour)
	block, _ := pem.Decode([]byte(text))
	f.Add([]byte(text))
	f.Add(block.Bytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		crl, err := ParseCRL(data)
		if err == nil && crl == nil {
			t.Fatal("nil CRL without an error")
		}
	})
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestCompareCRLs: CRL numbers order CRLs of one issuer; without numbers, their issue times do.
func TestCompareCRLs(t *testing.T) {
	t0 := time.Now()
	n := func(number int64, this time.Time) *x509.RevocationList {
		crl := &x509.RevocationList{ThisUpdate: this}
		if number >= 0 {
			crl.Number = big.NewInt(number)
		}
		return crl
	}
	for _, tc := range []struct {
		name string
		a, b *x509.RevocationList
		want int
	}{
		{"lower number, later time", n(3, t0.Add(time.Hour)), n(5, t0), -1},
		{"higher number", n(6, t0), n(5, t0), 1},
		{"same number", n(5, t0), n(5, t0.Add(time.Hour)), 0},
		{"no number: times decide", n(-1, t0), n(5, t0.Add(time.Hour)), -1},
		{"no numbers, later", n(-1, t0.Add(time.Hour)), n(-1, t0), 1},
	} {
		if got := CompareCRLs(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: CompareCRLs = %d, want %d", tc.name, got, tc.want)
		}
	}
}
