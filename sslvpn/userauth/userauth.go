// Package userauth checks what a user types on an SSL-VPN login: TOTP codes (RFC 6238: 30 s steps, six digits,
// one step of clock skew either way, each code accepted once) and passwords (bcrypt); failures of both feed one
// lockout per user, so guessing is slow whichever protocol the guesser uses.
//
// A Checker is safe for concurrent use. Its zero value is not usable; use New.
package userauth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"golang.org/x/crypto/bcrypt"
)

// Reasons a check fails; the messages are safe to show the client.
var (
	ErrWrongCode     = errors.New("wrong one-time password")
	ErrReplayedCode  = errors.New("one-time password already used; wait for the next one")
	ErrWrongPassword = errors.New("wrong user name or password")
	ErrLocked        = errors.New("too many failed logins; try again later")
	ErrNoOTP         = errors.New("no one-time password key is issued for this user")
)

// Period is the TOTP time step.
const Period = 30 * time.Second

// Options tune the lockout.
type Options struct {
	MaxFailures int           // failures within Window that lock the user (0: 5)
	Window      time.Duration // (0: 10 minutes)
	LockFor     time.Duration // (0: 15 minutes)
	Now         func() time.Time
}

// Counters are what happened since start, for status.
type Counters struct {
	Accepted    uint64 `json:"accepted"`
	WrongCodes  uint64 `json:"wrong_codes"`
	Replays     uint64 `json:"replays"`
	WrongPasswd uint64 `json:"wrong_passwords"`
	Lockouts    uint64 `json:"lockouts"`
	WhileLocked uint64 `json:"refused_while_locked"`
}

// Checker checks codes and passwords.
type Checker struct {
	opts Options

	mu    sync.Mutex
	users map[string]*userState

	accepted, wrongCodes, replays, wrongPasswd, lockouts, whileLocked atomic.Uint64
}

type userState struct {
	lastStep    uint64 // the newest time step whose code was accepted
	failures    []time.Time
	lockedUntil time.Time
}

// New returns a Checker.
func New(opts Options) *Checker {
	if opts.MaxFailures == 0 {
		opts.MaxFailures = 5
	}
	if opts.Window == 0 {
		opts.Window = 10 * time.Minute
	}
	if opts.LockFor == 0 {
		opts.LockFor = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Checker{opts: opts, users: map[string]*userState{}}
}

func (c *Checker) state(user string) *userState {
	st := c.users[user]
	if st == nil {
		st = &userState{}
		c.users[user] = st
	}
	return st
}

// locked reports whether user is locked out now; c.mu is held.
func (c *Checker) locked(st *userState, now time.Time) error {
	if now.Before(st.lockedUntil) {
		c.whileLocked.Add(1)
		return fmt.Errorf("%w (locked until %s)", ErrLocked, st.lockedUntil.Format(time.TimeOnly))
	}
	return nil
}

// fail records a failure and locks the user when they reach the limit; c.mu is held. It returns ErrLocked
// wrapping the reason when this failure locked the user.
func (c *Checker) fail(st *userState, now time.Time, reason error) error {
	kept := st.failures[:0]
	for _, f := range st.failures {
		if now.Sub(f) < c.opts.Window {
			kept = append(kept, f)
		}
	}
	st.failures = append(kept, now)
	if len(st.failures) >= c.opts.MaxFailures {
		st.lockedUntil = now.Add(c.opts.LockFor)
		st.failures = nil
		c.lockouts.Add(1)
		return fmt.Errorf("%w: %w (locked for %s)", ErrLocked, reason, c.opts.LockFor)
	}
	return reason
}

// CheckCode checks a TOTP code typed by user against their secret. A code is accepted once: the same code, or
// one of an earlier step, is refused after it.
func (c *Checker) CheckCode(user string, secret []byte, code string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	st := c.state(user)
	if err := c.locked(st, now); err != nil {
		return err
	}
	if len(secret) == 0 {
		return ErrNoOTP
	}
	code = strings.TrimSpace(code)
	step := uint64(now.Unix()) / uint64(Period/time.Second)
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	opts := hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	matched := uint64(0)
	found := false
	for _, s := range []uint64{step - 1, step, step + 1} {
		want, err := hotp.GenerateCodeCustom(b32, s, opts)
		if err == nil && len(code) == len(want) && subtle.ConstantTimeCompare([]byte(code), []byte(want)) == 1 {
			matched, found = s, true
		}
	}
	if !found {
		c.wrongCodes.Add(1)
		return c.fail(st, now, ErrWrongCode)
	}
	if matched <= st.lastStep {
		c.replays.Add(1)
		return c.fail(st, now, ErrReplayedCode)
	}
	st.lastStep = matched
	st.failures = nil
	c.accepted.Add(1)
	return nil
}

// CheckPassword checks a password against a bcrypt hash, under the same lockout.
func (c *Checker) CheckPassword(user, hash, password string) error {
	c.mu.Lock()
	st := c.state(user)
	now := c.opts.Now()
	if err := c.locked(st, now); err != nil {
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	// bcrypt is slow on purpose: compare outside the lock.
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.wrongPasswd.Add(1)
		return c.fail(st, now, ErrWrongPassword)
	}
	return nil
}

// Unlock lifts a user's lockout (an admin's decision).
func (c *Checker) Unlock(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.users[user]; st != nil {
		st.lockedUntil, st.failures = time.Time{}, nil
	}
}

// Counters returns the counts since start.
func (c *Checker) Counters() Counters {
	return Counters{Accepted: c.accepted.Load(), WrongCodes: c.wrongCodes.Load(), Replays: c.replays.Load(),
		WrongPasswd: c.wrongPasswd.Load(), Lockouts: c.lockouts.Load(), WhileLocked: c.whileLocked.Load()}
}

// NewSecret returns a new random 160-bit TOTP secret (the size RFC 4226 recommends).
func NewSecret() ([]byte, error) {
	b := make([]byte, 20)
	_, err := rand.Read(b)
	return b, err
}

// Base32 renders a secret as authenticator apps and oathtool read it.
func Base32(secret []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
}

// URI renders the otpauth:// URI that authenticator apps scan.
func URI(issuer, account string, secret []byte) string {
	v := url.Values{}
	v.Set("secret", Base32(secret))
	v.Set("issuer", issuer)
	v.Set("algorithm", "SHA1")
	v.Set("digits", "6")
	v.Set("period", "30")
	return (&url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: v.Encode()}).String()
}
