package enginetest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"testing"
	"time"
)

func TestPKIIssuesVerifiableCertificates(t *testing.T) {
	p := NewPKI(t, Leaf{Serial: 2, CommonName: "vpn.test", Usage: x509.ExtKeyUsageServerAuth, Hosts: []string{"10.99.0.1", "vpn.test"}})
	server, err := x509.ParseCertificate(p.Server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"10.99.0.1", "vpn.test"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: p.Pool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the server's certificate for %s: %v", host, err)
		}
	}
	sum := sha256.Sum256(server.RawSubjectPublicKeyInfo)
	if want := "pin-sha256:" + base64.StdEncoding.EncodeToString(sum[:]); p.Pin != want {
		t.Errorf("pin %q, want %q", p.Pin, want)
	}

	expired := time.Now().Add(-time.Hour)
	c, _, _ := p.Issue(t, Leaf{Serial: 10, CommonName: "mallory", Usage: x509.ExtKeyUsageClientAuth, NotAfter: expired})
	if !c.NotAfter.Equal(expired.Truncate(time.Second)) || c.SerialNumber.Int64() != 10 || c.Subject.CommonName != "mallory" {
		t.Errorf("issued %v %d %q", c.NotAfter, c.SerialNumber, c.Subject.CommonName)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: p.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("an expired certificate verified")
	}
	alice := p.Client(t, 3, "alice")
	leaf, err := x509.ParseCertificate(alice.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("alice's certificate: %v", err)
	}
}
