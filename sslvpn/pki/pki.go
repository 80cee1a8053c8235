// Package pki is the appliance's own certificate authority for the SSL-VPN: it issues server and client
// certificates, builds CRLs, reads CRLs in PEM or DER (the cloud guides' pain point: a CRL arrives as DER and had
// to be converted by hand), and bundles a client's certificate, key and CA as PKCS#12.
//
// Keys are ECDSA P-256: every OpenVPN 2.6, OpenConnect and AnyConnect client handles them, and they are cheap to
// make and to use. Functions are safe for concurrent use.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// ClientValidity is how long a client certificate is valid unless asked otherwise (the cloud guides' default).
const ClientValidity = 3 * 365 * 24 * time.Hour

// ErrNotCRL is data that is neither a PEM nor a DER CRL.
var ErrNotCRL = errors.New("pki: not a certificate revocation list (PEM or DER)")

// CA is a certificate authority whose key the appliance holds.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed CA valid for validity.
func NewCA(commonName string, validity time.Duration) (ca *CA, certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Toride"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", "", err
	}
	cert, _ := x509.ParseCertificate(der)
	kp, err := keyPEMOf(key)
	if err != nil {
		return nil, "", "", err
	}
	return &CA{Cert: cert, Key: key}, certPEMOf(der), kp, nil
}

// ParseCA reads a CA certificate and its key in PEM.
func ParseCA(certPEM, keyPEM string) (*CA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", cert.Subject)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issued is a certificate the CA made, with its key.
type Issued struct {
	CertPEM  string
	KeyPEM   string
	Serial   *big.Int
	NotAfter time.Time
}

// IssueClient makes a client certificate for commonName (the user id).
func (ca *CA) IssueClient(commonName string, validity time.Duration) (Issued, error) {
	if validity == 0 {
		validity = ClientValidity
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

// IssueServer makes a server certificate for the given names and addresses. Its key usage and extended key usage
// are what `remote-cert-tls server` in OpenVPN clients requires.
func (ca *CA) IssueServer(commonName string, names []string, addrs []netip.Addr, validity time.Duration) (Issued, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    names,
	}
	for _, a := range addrs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	return ca.issue(tmpl, validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-5 * time.Minute) // tolerate a client clock slightly behind
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Issued{}, fmt.Errorf("pki: issue %s: %w", tmpl.Subject.CommonName, err)
	}
	kp, err := keyPEMOf(key)
	if err != nil {
		return Issued{}, err
	}
	return Issued{CertPEM: certPEMOf(der), KeyPEM: kp, Serial: tmpl.SerialNumber, NotAfter: tmpl.NotAfter}, nil
}

// Revocation is one revoked certificate.
type Revocation struct {
	Serial *big.Int
	Time   time.Time
}

// CRL builds a CRL of the revoked certificates, valid for validity. number must grow with every CRL the CA
// issues (RFC 5280 §5.2.3); a clock-derived number does.
func (ca *CA) CRL(revoked []Revocation, number *big.Int, validity time.Duration) (string, error) {
	now := time.Now()
	entries := make([]x509.RevocationListEntry, len(revoked))
	for i, r := range revoked {
		entries[i] = x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.Time}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(validity),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return "", fmt.Errorf("pki: CRL: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})), nil
}

// ParseCRL reads a CRL in PEM or DER.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: a PEM %q block", ErrNotCRL, block.Type)
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotCRL, err)
	}
	return crl, nil
}

// CompareCRLs orders two CRLs of one issuer: -1 when a is older than b, 0 when they are the same issue, +1 when a
// is newer. CRL numbers decide (RFC 5280 §5.2.3: they grow with every CRL an issuer makes); when either has none,
// the issue times (thisUpdate) do.
func CompareCRLs(a, b *x509.RevocationList) int {
	if a.Number != nil && b.Number != nil {
		return a.Number.Cmp(b.Number)
	}
	return a.ThisUpdate.Compare(b.ThisUpdate)
}

// DescribeCRL names a CRL for messages: its number, or its issue time when it has none.
func DescribeCRL(crl *x509.RevocationList) string {
	if crl.Number != nil {
		return "number " + crl.Number.String()
	}
	return "of " + crl.ThisUpdate.UTC().Format(time.RFC3339)
}

// CRLPEM turns a CRL in PEM or DER into PEM, checking it parses.
func CRLPEM(data []byte) (string, *x509.RevocationList, error) {
	crl, err := ParseCRL(data)
	if err != nil {
		return "", nil, err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})), crl, nil
}

// ParseCertificate reads the first PEM certificate of text.
func ParseCertificate(text string) (*x509.Certificate, error) {
	certs, err := ParseCertificates(text)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// ParseCertificates reads every PEM certificate of text.
func ParseCertificates(text string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(text)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("pki: no PEM certificate found")
	}
	return out, nil
}

// ParseKey reads a PEM private key (PKCS#8, PKCS#1 or SEC 1).
func ParseKey(text string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil || !strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, errors.New("pki: no PEM private key found")
	}
	var k any
	var err error
	if k, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if k, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			if k, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
				return nil, fmt.Errorf("pki: private key: %w", err)
			}
		}
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("pki: private key cannot sign")
	}
	return s, nil
}

// PKCS12 bundles a client's certificate, key and CA, encrypted with password (AES-256 and PBKDF2, which current
// OpenVPN, Windows and macOS read).
func PKCS12(certPEM, keyPEM, caPEM, password string) ([]byte, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	cas, err := ParseCertificates(caPEM)
	if err != nil {
		return nil, err
	}
	return pkcs12.Modern.Encode(key, cert, cas, password)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("pki: no randomness: " + err.Error())
	}
	return n.Add(n, big.NewInt(1)) // never zero
}

func certPEMOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func keyPEMOf(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}
