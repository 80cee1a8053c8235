package secrets

import (
	"errors"
	"path/filepath"
	"testing"

	"toride/sslvpn/userauth"
)

func TestSealedSecrets(t *testing.T) {
	sealer, err := Open(filepath.Join(t.TempDir(), "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	codec := ConfigCodec{sealer}
	psk := []string{"ipsec", "connections", "aws", "tunnels", "tunnel1", "pre-shared-key"}
	other := []string{"ipsec", "connections", "aws", "tunnels", "tunnel2", "pre-shared-key"}

	sealed := codec.Seal(psk, "Key.with_dots1")
	if !IsSealed(sealed) {
		t.Fatalf("Seal = %q", sealed)
	}
	if v, current, err := codec.Open(psk, sealed); v != "Key.with_dots1" || !current || err != nil {
		t.Fatalf("Open = %q %v %v", v, current, err)
	}
	// Bound to its place: copied to the other tunnel it does not open, and stays as it was.
	if v, current, err := codec.Open(other, sealed); !errors.Is(err, ErrOpen) || v != sealed || !current {
		t.Fatalf("Open at another path = %q %v %v; want ErrOpen and the stored form kept", v, current, err)
	}
	// Never sealed twice: a value kept as found goes back as it was.
	if again := codec.Seal(other, sealed); again != sealed {
		t.Fatal("a sealed value was sealed again")
	}
	// Written in clear by an older version: taken as it is, and reported as not current, so the store rewrites it.
	if v, current, err := codec.Open(psk, "Key.in_clear"); v != "Key.in_clear" || current || err != nil {
		t.Fatalf("Open of a clear value = %q %v %v", v, current, err)
	}
	// An OTP key sealed the old way (raw bytes under "otp:USER") opens as its base32, to be rewritten.
	raw, _ := userauth.NewSecret()
	old := sealer.Seal(raw, "otp:alice")
	if v, current, err := codec.Open([]string{"users", "alice", "otp-key"}, old); v != userauth.Base32(raw) || current || err != nil {
		t.Fatalf("Open of an old OTP key = %q %v %v", v, current, err)
	}
	if _, _, err := codec.Open([]string{"users", "bob", "otp-key"}, old); err == nil {
		t.Fatal("alice's old OTP key opened as bob's")
	}
}
