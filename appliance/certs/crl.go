package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"

	"toride/appliance/atomicfile"
	"toride/sslvpn/pki"
)

// The CRLs in force: for each CA, the newest CRL the appliance has applied, one PEM file per CA next to its
// ledger. Like revocations, they live outside the configuration so that nothing brings an older CRL back into
// force: a rollback, a commit-confirm that reverts, or a config.json restored from the archive may hold an older
// CRL (or none), and the newer one stays in force. A CRL leaves force only for a newer one of the same CA.

func (l *Ledger) crlFile(ca string) (string, error) {
	if !safeName.MatchString(ca) {
		return "", fmt.Errorf("certs: bad CA name %q", ca)
	}
	return filepath.Join(l.dir, ca+".crl.pem"), nil
}

// CRLInForce returns the CRL in force for caName, or nil: the newest one recorded for it that ca (the CA's
// current certificate) signed. A CRL of an earlier CA that had the same name does not count.
func (l *Ledger) CRLInForce(caName string, ca *x509.Certificate) (*x509.RevocationList, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.crlInForce(caName, ca)
}

func (l *Ledger) crlInForce(caName string, ca *x509.Certificate) (*x509.RevocationList, error) {
	path, err := l.crlFile(caName)
	if err != nil {
		return nil, err
	}
	data, err := readIfExists(path)
	if data == nil || err != nil {
		return nil, err
	}
	crl, err := pki.ParseCRL(data)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	if crl.CheckSignatureFrom(ca) != nil {
		return nil, nil
	}
	return crl, nil
}

// KeepNewerCRL puts crl in force for caName unless a newer CRL of the same CA is in force already, and returns the
// one in force afterwards: crl, or the newer one. A CRL as new as the one in force (the same number) replaces it.
func (l *Ledger) KeepNewerCRL(caName string, ca *x509.Certificate, crl *x509.RevocationList) (*x509.RevocationList, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, err := l.crlInForce(caName, ca)
	if err != nil {
		return nil, err
	}
	if cur != nil && pki.CompareCRLs(crl, cur) < 0 {
		return cur, nil
	}
	if cur != nil && string(cur.Raw) == string(crl.Raw) {
		return cur, nil
	}
	path, _ := l.crlFile(caName)
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw}), 0o600); err != nil {
		return nil, err
	}
	return crl, nil
}
