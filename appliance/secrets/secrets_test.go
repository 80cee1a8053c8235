package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "keys", "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "keys", "seal.key"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	sealed := s.Seal([]byte("JBSWY3DPEHPK3PXP"), "otp:alice")
	if !IsSealed(sealed) || string(sealed) == "JBSWY3DPEHPK3PXP" {
		t.Fatalf("sealed = %q", sealed)
	}
	if got, err := s.Open(sealed, "otp:alice"); err != nil || string(got) != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("Open = %q %v", got, err)
	}
	if _, err := s.Open(sealed, "otp:bob"); !errors.Is(err, ErrOpen) {
		t.Fatalf("a value moved to another user's place opened: %v", err)
	}
	again, err := Open(filepath.Join(dir, "keys", "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Open(sealed, "otp:alice"); err != nil {
		t.Fatalf("the key did not survive a restart: %v", err)
	}
	other, _ := Open(filepath.Join(t.TempDir(), "seal.key"))
	if _, err := other.Open(sealed, "otp:alice"); !errors.Is(err, ErrOpen) {
		t.Fatalf("another appliance opened it: %v", err)
	}
	for _, bad := range []string{"plain", "sealed:v1:!!", "sealed:v1:AAAA"} {
		if _, err := s.Open(bad, "otp:alice"); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

// TestEmptyKeyFileIsReplaced: an empty key file (a crash while an older version created it) must not stop the
// appliance from starting; no value can have been sealed with it.
func TestEmptyKeyFileIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatalf("an empty key file stops the start: %v", err)
	}
	sealed := s.Seal([]byte("x"), "c")
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Open(sealed, "c"); err != nil {
		t.Fatalf("the replacement key was not kept: %v", err)
	}
}

// TestConcurrentOpenAgreesOnOneKey: starts racing to create the key end with one key that opens what either sealed.
func TestConcurrentOpenAgreesOnOneKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "seal.key")
	const n = 8
	sealers := make(chan *Sealer, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := Open(path)
			if err != nil {
				errs <- err
				return
			}
			sealers <- s
		}()
	}
	var all []*Sealer
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case s := <-sealers:
			all = append(all, s)
		}
	}
	sealed := all[0].Seal([]byte("v"), "c")
	for i, s := range all {
		if _, err := s.Open(sealed, "c"); err != nil {
			t.Fatalf("sealer %d has another key: %v", i, err)
		}
	}
}
