package sslvpnsvc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"toride/sslvpn/userauth"
)

// TestTOTPStepsSurviveRestart: a code accepted by one Checker over the state file is refused by the next one over
// the same file, as after a restart of torided; the file is private and holds the step.
func TestTOTPStepsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sslvpn", "totp-steps.json")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Date(2026, 11, 23, 9, 0, 10, 0, time.UTC)
	clock := func() time.Time { return now }
	secret := []byte("12345678901234567890")
	code, err := hotp.GenerateCodeCustom(userauth.Base32(secret), uint64(now.Unix())/30, hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	login := userauth.Attempt{User: "alice", Source: netip.MustParseAddr("192.0.2.2"), CheckCode: true, Secret: secret, Code: code}
	start := func() *userauth.Checker {
		return userauth.New(userauth.Options{Now: clock, Replay: &totpSteps{path: path, log: quiet}})
	}
	if err := start().Check(context.Background(), login); err != nil {
		t.Fatalf("first use of the code: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	if err := start().Check(context.Background(), login); !errors.Is(err, userauth.ErrReplayedCode) {
		t.Fatalf("the same code after a restart: %v", err)
	}

	// A file that cannot be read refuses every code of the window rather than trusting none was used.
	if err := os.WriteFile(path, []byte(`{"steps": {"alice": 1`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := start()
	login.User = "bob"
	if err := c.Check(context.Background(), login); !errors.Is(err, userauth.ErrReplayedCode) {
		t.Fatalf("a code after the state was lost: %v", err)
	}
	if n := c.Counters().ReplayStateErrors; n != 1 {
		t.Fatalf("replay state errors %d, want 1", n)
	}
}
