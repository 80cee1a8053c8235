package certs

import (
	"crypto/x509"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"toride/appliance/secrets"
	"toride/sslvpn/pki"
)

func TestIssueRevokeAndKeys(t *testing.T) {
	dir := t.TempDir()
	sealer, err := secrets.Open(filepath.Join(dir, "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(filepath.Join(dir, "pki"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	ca, _, _, _ := pki.NewCA("users", time.Hour*24*365)
	issue := func(user string) Entry {
		e, err := l.Issue("users", Client, user, func() (pki.Issued, error) { return ca.IssueClient(user, 0) })
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a1 := issue("alice")
	a2 := issue("alice")
	b := issue("bob")
	latest, err := l.Latest("users", Client, "alice")
	if err != nil || latest.Serial != a2.Serial {
		t.Fatalf("latest of alice = %v %v, want the second", latest.Serial, err)
	}
	key, err := l.Key("users", latest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.ParseKey(key); err != nil {
		t.Fatalf("the sealed key does not open to a key: %v", err)
	}
	revoked, err := l.RevokeSubject("users", Client, "alice")
	if err != nil || len(revoked) != 2 {
		t.Fatalf("revoked %d %v", len(revoked), err)
	}
	if _, err := l.Latest("users", Client, "alice"); !errors.Is(err, ErrNone) {
		t.Fatalf("alice still has a certificate: %v", err)
	}
	if _, err := l.RevokeSubject("users", Client, "alice"); !errors.Is(err, ErrNone) {
		t.Fatal("revoking twice found something")
	}
	revs, _ := l.Revocations("users")
	if len(revs) != 2 {
		t.Fatalf("revocations %v", revs)
	}
	for _, r := range revs {
		if got := r.Serial.Text(16); got != lower(a1.Serial) && got != lower(a2.Serial) {
			t.Fatalf("revoked serial %s is not alice's", got)
		}
	}
	// The ledger survives a reopen, bob untouched.
	l2, _ := Open(filepath.Join(dir, "pki"), sealer)
	if e, err := l2.Latest("users", Client, "bob"); err != nil || e.Serial != b.Serial {
		t.Fatalf("bob after reopen: %v %v", e.Serial, err)
	}
	if subs, _ := l2.Subjects("users", Client); len(subs) != 1 || subs[0] != "bob" {
		t.Fatalf("subjects %v", subs)
	}
	if _, err := l.Entries("../etc"); err == nil {
		t.Fatal("a CA name with a path in it was accepted")
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + 32
		}
	}
	// big.Int.Text drops leading zeros; so does %X.
	return string(b)
}

// TestCRLInForceNeverGoesBack: the CRL in force for a CA is replaced by a newer one only; an older one leaves it in
// force; a CA re-made under the same name does not inherit its predecessor's CRL.
func TestCRLInForceNeverGoesBack(t *testing.T) {
	dir := t.TempDir()
	sealer, err := secrets.Open(filepath.Join(dir, "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(filepath.Join(dir, "pki"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	ca, _, _, _ := pki.NewCA("Corp CA", 24*time.Hour)
	crl := func(ca *pki.CA, n int64) *x509.RevocationList {
		text, err := ca.CRL(nil, big.NewInt(n), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCRL([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got, err := l.CRLInForce("corp", ca.Cert); got != nil || err != nil {
		t.Fatalf("in force before any: %v %v", got, err)
	}
	for _, step := range []struct {
		load, want int64
	}{{5, 5}, {3, 5}, {6, 6}, {2, 6}} {
		got, err := l.KeepNewerCRL("corp", ca.Cert, crl(ca, step.load))
		if err != nil {
			t.Fatal(err)
		}
		if got.Number.Int64() != step.want {
			t.Fatalf("loading CRL %d: %d in force, want %d", step.load, got.Number, step.want)
		}
	}
	// Reopened (a restart): still 6.
	l2, _ := Open(filepath.Join(dir, "pki"), sealer)
	if got, err := l2.CRLInForce("corp", ca.Cert); err != nil || got == nil || got.Number.Int64() != 6 {
		t.Fatalf("after a restart: %v %v", got, err)
	}
	other, _, _, _ := pki.NewCA("Corp CA", 24*time.Hour)
	if got, err := l2.CRLInForce("corp", other.Cert); got != nil || err != nil {
		t.Fatalf("a new CA under the same name inherited the old CA's CRL: %v %v", got, err)
	}
	if got, err := l2.KeepNewerCRL("corp", other.Cert, crl(other, 1)); err != nil || got.Number.Int64() != 1 {
		t.Fatalf("the new CA's first CRL: %v %v", got, err)
	}
}
