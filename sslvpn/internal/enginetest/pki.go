// Package enginetest is what the tests of the protocol engines (sslvpn/openvpn, sslvpn/anyconnect) share: a test
// PKI, a lab of a server and a client namespace joined by a veth pair, an engine served on its sockets until the
// test ends, and an uplink that answers pings in place of the LAN.
//
// The stock clients those tests drive are run by tests/ovpnclient and tests/occlient, as the end-to-end tests
// run them.
package enginetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA made for one test, with the server's certificate. Its fields are set once by NewPKI.
type PKI struct {
	CA    *x509.Certificate
	CAKey *ecdsa.PrivateKey
	CAPEM []byte

	Server                      tls.Certificate
	ServerCertPEM, ServerKeyPEM []byte
	Pin                         string // openconnect's pin-sha256:… of the server's key
}

// Leaf describes a certificate the CA issues.
type Leaf struct {
	Serial     int64
	CommonName string
	Usage      x509.ExtKeyUsage
	Hosts      []string  // DNS names and IP addresses it is valid for
	NotAfter   time.Time // zero: valid from an hour ago for a day; else for the 48 hours up to NotAfter
}

// NewPKI makes a CA ("toride test CA", ECDSA P-256) and issues the server's certificate.
func NewPKI(t testing.TB, server Leaf) *PKI {
	t.Helper()
	p := &PKI{}
	var err error
	if p.CAKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "toride test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.CAKey.PublicKey, p.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.CA, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, certPEM, keyPEM := p.Issue(t, server)
	p.ServerCertPEM, p.ServerKeyPEM = certPEM, keyPEM
	if p.Server, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	p.Pin = "pin-sha256:" + base64.StdEncoding.EncodeToString(sum[:])
	return p
}

// Issue makes a certificate with a new key and returns it, in PEM too, with its key (PKCS #8 PEM).
func (p *PKI) Issue(t testing.TB, l Leaf) (cert *x509.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(l.Serial), Subject: pkix.Name{CommonName: l.CommonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{l.Usage},
	}
	if !l.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = l.NotAfter.Add(-48*time.Hour), l.NotAfter
	}
	for _, h := range l.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &k.PublicKey, p.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// Client issues a client certificate (and its key) for cn.
func (p *PKI) Client(t testing.TB, serial int64, cn string) tls.Certificate {
	t.Helper()
	_, certPEM, keyPEM := p.Issue(t, Leaf{Serial: serial, CommonName: cn, Usage: x509.ExtKeyUsageClientAuth})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ClientFiles issues a client certificate for cn and writes it and its key into dir as cn.crt and cn.key.
func (p *PKI) ClientFiles(t testing.TB, dir string, serial int64, cn string) (certFile, keyFile string) {
	t.Helper()
	_, certPEM, keyPEM := p.Issue(t, Leaf{Serial: serial, CommonName: cn, Usage: x509.ExtKeyUsageClientAuth})
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	WriteFiles(t, dir, map[string][]byte{cn + ".crt": certPEM, cn + ".key": keyPEM})
	return certFile, keyFile
}

// Pool is a certificate pool holding the CA.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	return pool
}

// ServerTLS is the TLS configuration a concentrator would pass an engine: the server's certificate, client
// certificates verified against the CA as auth says, TLS 1.2 at least.
func (p *PKI) ServerTLS(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Server}, ClientAuth: auth, ClientCAs: p.Pool(), MinVersion: tls.VersionTLS12}
}

// WriteFiles writes files (name → content) into dir, readable by their owner alone.
func WriteFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
