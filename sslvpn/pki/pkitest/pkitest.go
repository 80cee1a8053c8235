// Package pkitest makes the certificate hierarchies tests need and the appliance never issues itself: a root CA
// with an intermediate CA under it.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"toride/sslvpn/pki"
)

// Chain is a root CA and an intermediate CA it issued; both can issue with pki's methods (the intermediate's
// client certificates chain to the root through it).
type Chain struct {
	Root, Intermediate       *pki.CA
	RootPEM, IntermediatePEM string
	IntermediateSerial       *big.Int
}

// NewChain makes a root CA rootName and an intermediate CA interName under it, valid for validity.
func NewChain(t testing.TB, rootName, interName string, validity time.Duration) *Chain {
	t.Helper()
	now := time.Now()
	root := newCA(t, &x509.Certificate{Subject: pkix.Name{CommonName: rootName}, MaxPathLen: 1}, nil, now, validity)
	inter := newCA(t, &x509.Certificate{Subject: pkix.Name{CommonName: interName}, MaxPathLenZero: true}, root, now, validity)
	return &Chain{Root: root, Intermediate: inter, RootPEM: PEM(root.Cert), IntermediatePEM: PEM(inter.Cert),
		IntermediateSerial: inter.Cert.SerialNumber}
}

func newCA(t testing.TB, tmpl *x509.Certificate, parent *pki.CA, now time.Time, validity time.Duration) *pki.CA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(validity)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	issuer, signer := tmpl, any(key)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

// PEM encodes a certificate.
func PEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
