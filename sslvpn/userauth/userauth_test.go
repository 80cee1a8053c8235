package userauth

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"golang.org/x/crypto/bcrypt"
)

var secret = []byte("12345678901234567890") // RFC 6238 appendix B's SHA-1 key

func codeAt(t *testing.T, tm time.Time) string {
	t.Helper()
	c, err := hotp.GenerateCodeCustom(Base32(secret), uint64(tm.Unix())/30, hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRFC6238Vectors(t *testing.T) {
	// RFC 6238 appendix B, SHA-1, the last six digits of the eight-digit codes.
	for _, v := range []struct {
		unix int64
		code string
	}{{59, "287082"}, {1111111109, "081804"}, {1234567890, "005924"}, {2000000000, "279037"}} {
		now := time.Unix(v.unix, 0)
		c := New(Options{Now: func() time.Time { return now }})
		if err := c.CheckCode("u", secret, v.code); err != nil {
			t.Errorf("T=%d code %s: %v", v.unix, v.code, err)
		}
	}
}

func TestSkewReplayAndLockout(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 10, 0, time.UTC)
	c := New(Options{Now: func() time.Time { return now }, MaxFailures: 2})
	// One step late (the client's clock is slow) is fine.
	if err := c.CheckCode("alice", secret, codeAt(t, now.Add(-30*time.Second))); err != nil {
		t.Fatalf("previous step: %v", err)
	}
	// Two steps off is not.
	if err := c.CheckCode("alice", secret, codeAt(t, now.Add(-61*time.Second))); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("two steps back: %v", err)
	}
	cur := codeAt(t, now)
	if err := c.CheckCode("alice", secret, cur); err != nil {
		t.Fatalf("current code: %v", err)
	}
	if err := c.CheckCode("alice", secret, cur); !errors.Is(err, ErrReplayedCode) {
		t.Fatalf("the same code twice: %v", err)
	}
	// A success clears earlier failures: the replay is the first of two, a second locks alice, and even a right
	// code is refused then.
	err := c.CheckCode("alice", secret, "000000")
	if !errors.Is(err, ErrLocked) || !errors.Is(err, ErrWrongCode) {
		t.Fatalf("third failure: %v", err)
	}
	now = now.Add(30 * time.Second)
	if err := c.CheckCode("alice", secret, codeAt(t, now)); !errors.Is(err, ErrLocked) {
		t.Fatalf("a right code while locked: %v", err)
	}
	// Bob is not affected.
	if err := c.CheckCode("bob", secret, codeAt(t, now)); err != nil {
		t.Fatalf("bob: %v", err)
	}
	now = now.Add(16 * time.Minute)
	if err := c.CheckCode("alice", secret, codeAt(t, now)); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	got := c.Counters()
	if got.Lockouts != 1 || got.Replays != 1 || got.WrongCodes != 2 || got.WhileLocked != 1 || got.Accepted != 4 {
		t.Fatalf("counters %+v", got)
	}
}

func TestPasswordFailuresShareTheLockout(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	c := New(Options{Now: func() time.Time { return now }, MaxFailures: 2})
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err := c.CheckPassword("carol", string(hash), "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckPassword("carol", string(hash), "guess"); !errors.Is(err, ErrWrongPassword) {
		t.Fatal(err)
	}
	if err := c.CheckCode("carol", secret, "123456"); !errors.Is(err, ErrLocked) {
		t.Fatalf("a wrong password then a wrong code should lock carol: %v", err)
	}
}

// TestCodesMatchOathtool checks against an independent TOTP implementation, when oathtool is installed.
func TestCodesMatchOathtool(t *testing.T) {
	if _, err := exec.LookPath("oathtool"); err != nil {
		t.Skip("oathtool not installed")
	}
	s, _ := NewSecret()
	out, err := exec.Command("oathtool", "-b", "--totp", Base32(s)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := New(Options{}).CheckCode("u", s, strings.TrimSpace(string(out))); err != nil {
		t.Fatalf("oathtool's code refused: %v", err)
	}
}

func TestURI(t *testing.T) {
	u := URI("Toride", "alice", secret)
	if !strings.HasPrefix(u, "otpauth://totp/Toride:alice?") || !strings.Contains(u, "secret="+Base32(secret)) {
		t.Fatalf("URI %s", u)
	}
	key, err := otp.NewKeyFromURL(u)
	if err != nil || key.Secret() != Base32(secret) || key.Issuer() != "Toride" {
		t.Fatalf("URI does not parse back: %v %v", key, err)
	}
}
