// Package userauth checks what a user types on an SSL-VPN login — a bcrypt password, a TOTP code (RFC 6238: 30 s
// steps, six digits, one step of clock skew either way, each code accepted once), or both — and slows down whoever
// guesses.
//
// One login is one Check with every factor it asks for; it passes or fails as a whole. A failure shows the
// client nothing but ErrLoginFailed: not which factor was wrong, not whether the user exists, not whether a
// lockout is in force; the error also names the real reason, for the logs. An unknown user, or a user without a
// password or a TOTP key, costs the same work as a known one: a decoy hash of the same bcrypt cost is compared
// and a decoy key's codes are computed, so neither the answer nor its time tells user names apart.
//
// Who is slowed down, and why so:
//
//   - A user from one source (an IPv4 address, or an IPv6 /64: what one subscriber usually holds) is locked out
//     for LockFor after MaxFailures failures within Window. The lock is per user and source: a stranger who knows
//     a user name locks out himself, never the user at home.
//   - A source is blocked for LockFor after SourceMaxFailures failures within Window, whatever the user names: a
//     guesser who cycles through names, or tries one password on many, is stopped as early.
//   - A user guessed at from many sources (a botnet, each source under its limits) is not locked out: that would
//     let any botnet lock out anyone. Once the user has UserSlowAfter failures within Window, the sources that
//     have not logged in as that user within TrustFor share one attempt every UserSpacing, which caps the guessing
//     rate whatever the number of sources. A source the user logged in from recently is not slowed: the user at
//     their usual address gets in during the attack; from a new address they may have to wait for it to end.
//   - An attempt counts as a failure from its start until it succeeds: the limits are checked and the attempt is
//     reserved before any hashing, so parallel guesses cannot outrun the count.
//   - At most HashConcurrency bcrypt comparisons run at once; an attempt that cannot start one within HashWait is
//     refused (and not counted as a failure: nothing was checked).
//
// The state is bounded: the tables of sources, users, user-and-source pairs and trusted pairs hold at most
// MaxTracked entries each; a full table forgets its least recently used entry, whose counts have most often
// expired. User names are kept in these tables only as keyed hashes, so a long made-up name costs no more than a
// short one, and a flood of names no more than MaxTracked of them.
//
// The newest accepted time step of each user, which refuses a replayed code, is kept by a ReplayStore across
// restarts: loaded by New, saved before a code is accepted.
//
// A Checker is safe for concurrent use. Its zero value is not usable; use New. Locking: mu guards the tables and
// the accepted steps and is never held while hashing or saving; saveMu orders the saves.
package userauth

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"golang.org/x/crypto/bcrypt"

	"toride/sslvpn/shed"
)

// ErrLoginFailed is what every failed check shows the client, whatever its reason.
var ErrLoginFailed = errors.New("login failed: wrong user name, password or one-time password (each code works once), or too many failures; try again later")

// Reasons a check fails, for the logs. Check's error wraps ErrLoginFailed and one of them.
var (
	ErrWrongPassword = errors.New("wrong password")
	ErrNoPassword    = errors.New("no password is set for the user")
	ErrWrongCode     = errors.New("wrong one-time password")
	ErrReplayedCode  = errors.New("one-time password already used")
	ErrNoOTP         = errors.New("no one-time password key is issued for the user")
	ErrLocked        = errors.New("too many failures of this user from this source")
	ErrSourceBlocked = errors.New("too many failures from this source")
	ErrSlowedDown    = errors.New("the user's logins from new sources are spaced after many failures from many sources")
	ErrBusy          = errors.New("too many logins being checked at once")
	ErrReplayState   = errors.New("the accepted one-time password could not be recorded")
)

// Period is the TOTP time step.
const Period = 30 * time.Second

// DecoyCost is the bcrypt cost of the decoy hash until a real hash has been checked (then the decoy takes the
// real one's cost): the cost `toride generate password-hash` uses.
const DecoyCost = 12

// Options tune the limits. Zero values take the defaults in parentheses.
type Options struct {
	MaxFailures       int           // failures of a user from one source within Window that lock them out there (5)
	Window            time.Duration // (10 minutes)
	LockFor           time.Duration // how long a lockout or a blocked source lasts (15 minutes)
	SourceMaxFailures int           // failures from one source within Window, any users, that block it (30)
	UserSlowAfter     int           // failures of a user within Window, any sources, that slow new sources (20)
	UserSpacing       time.Duration // one attempt per this, from all new sources together, while slowed (10 s)
	TrustFor          time.Duration // how long a source a user logged in from is not slowed for them (14 days)
	MaxTracked        int           // entries per table (16384)
	HashConcurrency   int           // bcrypt comparisons at once (GOMAXPROCS)
	HashWait          time.Duration // the longest an attempt waits to start its comparison (3 s)
	Replay            ReplayStore   // where accepted time steps survive restarts (nil: memory only)
	Now               func() time.Time
}

// ReplayStore keeps the newest accepted time step of each user across restarts. Load is called once by New.
// Save is called with every step that still matters (those within the acceptance window) each time a code is
// accepted, before the login is; calls are never concurrent. When Save fails the login is refused; when Load
// fails, every code of the steps up to the next one is refused, so no code can be used twice.
type ReplayStore interface {
	Load() (map[string]uint64, error)
	Save(steps map[string]uint64) error
}

// Counters are what happened since start, for status.
type Counters struct {
	Accepted          uint64 `json:"accepted"`
	Failures          uint64 `json:"failures"` // checked attempts that failed, for whatever reason
	WrongCodes        uint64 `json:"wrong_codes"`
	Replays           uint64 `json:"replays"`
	WrongPasswd       uint64 `json:"wrong_passwords"`
	Lockouts          uint64 `json:"lockouts"`             // user-and-source pairs locked out
	SourceBlocks      uint64 `json:"source_blocks"`        // sources blocked
	WhileLocked       uint64 `json:"refused_while_locked"` // attempts refused unchecked: locked out, blocked, or too many in flight
	SlowedDown        uint64 `json:"refused_slowed_down"`  // attempts refused unchecked: a slowed user's next slot not reached
	Busy              uint64 `json:"refused_busy"`         // attempts refused unchecked: no bcrypt slot within HashWait
	ReplayStateErrors uint64 `json:"replay_state_errors"`  // loads and saves of the accepted steps that failed
	Tracked           int    `json:"tracked"`              // entries in the tables, at most 4 × MaxTracked
}

// Attempt is one login to check: the factors it asks for and what the client typed.
type Attempt struct {
	User   string
	Source netip.Addr // the client's address

	CheckPassword bool
	Hash          string // the user's bcrypt hash; "" when they have none (a decoy is compared, and the check fails)
	Password      string // as typed

	CheckCode bool
	Secret    []byte // the user's TOTP key; nil when none is issued (a decoy's codes are computed; the check fails)
	Code      string // as typed

	// Refuse, when set, makes the check fail with this reason after doing the same work as any other: for a user
	// who is unknown or disabled.
	Refuse error
}

// failure is a failed check: the client sees ErrLoginFailed, the logs the reason.
type failure struct{ reason error }

func (f *failure) Error() string   { return f.reason.Error() }
func (f *failure) Unwrap() []error { return []error{ErrLoginFailed, f.reason} }

// Checker checks logins. See the package comment.
type Checker struct {
	opts     Options
	seed     maphash.Seed
	hashSem  chan struct{}
	decoyKey []byte
	decoy    []byte       // a bcrypt hash of nothing anyone types, cost digits patched per use
	cost     atomic.Int32 // the cost of the last real hash checked

	mu       sync.Mutex
	sources  *lru[netip.Prefix, sourceState]
	users    *lru[uint64, userState]
	pairs    *lru[pairKey, pairState]
	trusted  *lru[pairKey, int64] // until when (unix ns) the pair's source is not slowed
	steps    map[string]uint64    // the newest accepted time step, by user
	floor    uint64               // steps up to this count as used for everyone (the stored steps were lost)
	saveMu   sync.Mutex
	counters struct {
		accepted, failures, wrongCodes, replays, wrongPasswd, lockouts, sourceBlocks, whileLocked, slowed, busy, replayErrs atomic.Uint64
	}
}

type pairKey struct {
	user uint64       // maphash of the user name
	src  netip.Prefix // shed.SourceOf the client's address
}

// window counts failures in a window of time that opens with the first of them, and the attempts in flight.
type window struct {
	n, inflight int32
	start       int64 // unix ns
}

// current is the failures within the window at now plus the attempts in flight.
func (w *window) current(now, span int64) int {
	if w.n > 0 && now-w.start >= span {
		w.n = 0
	}
	return int(w.n + w.inflight)
}

func (w *window) fail(now, span int64) {
	if w.n == 0 || now-w.start >= span {
		w.n, w.start = 0, now
	}
	w.n++
}

func (w *window) settle() {
	if w.inflight > 0 {
		w.inflight--
	}
}

type sourceState struct {
	fails        window
	blockedUntil int64
}

type userState struct {
	fails    window
	nextSlot int64 // while slowed: when a new source may try next
}

type pairState struct {
	fails       window
	lockedUntil int64
}

// New returns a Checker, with the accepted steps loaded from opts.Replay.
func New(opts Options) *Checker {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.MaxFailures, 5)
	def(&opts.SourceMaxFailures, 30)
	def(&opts.UserSlowAfter, 20)
	def(&opts.MaxTracked, 16384)
	def(&opts.HashConcurrency, runtime.GOMAXPROCS(0))
	defDur(&opts.Window, 10*time.Minute)
	defDur(&opts.LockFor, 15*time.Minute)
	defDur(&opts.UserSpacing, 10*time.Second)
	defDur(&opts.TrustFor, 14*24*time.Hour)
	defDur(&opts.HashWait, 3*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Checker{opts: opts, seed: maphash.MakeSeed(), hashSem: make(chan struct{}, opts.HashConcurrency),
		sources: newLRU[netip.Prefix, sourceState](opts.MaxTracked), users: newLRU[uint64, userState](opts.MaxTracked),
		pairs: newLRU[pairKey, pairState](opts.MaxTracked), trusted: newLRU[pairKey, int64](opts.MaxTracked),
		steps: map[string]uint64{}}
	c.decoyKey = make([]byte, 20)
	_, _ = rand.Read(c.decoyKey)
	// The decoy is made at the cheapest cost and compared at the real one: bcrypt's work depends on the cost
	// field alone, and a hash nobody knows the password of is all a decoy needs to be.
	pw := make([]byte, 32)
	_, _ = rand.Read(pw)
	d, err := bcrypt.GenerateFromPassword(pw, bcrypt.MinCost)
	if err != nil {
		panic("userauth: bcrypt: " + err.Error()) // only for a password over 72 bytes
	}
	c.decoy = d
	c.cost.Store(DecoyCost)
	if opts.Replay != nil {
		steps, err := opts.Replay.Load()
		if err != nil {
			c.counters.replayErrs.Add(1)
			c.floor = c.step(opts.Now()) + 1
		}
		maps.Copy(c.steps, steps)
	}
	return c
}

func (c *Checker) step(t time.Time) uint64 { return uint64(t.Unix()) / uint64(Period/time.Second) }

// Check checks one login. It returns nil, or an error for which errors.Is(err, ErrLoginFailed) holds, that wraps
// the reason (ErrWrongPassword, ErrLocked, the attempt's Refuse...) and whose text is the reason's: show the client
// ErrLoginFailed's text, never this one. ctx bounds the wait for a bcrypt slot.
func (c *Checker) Check(ctx context.Context, a Attempt) error {
	pk := pairKey{user: maphash.String(c.seed, a.User), src: shed.SourceOf(a.Source)}
	if err := c.reserve(pk); err != nil {
		return &failure{err}
	}
	reason := c.verify(ctx, &a)
	c.settle(pk, reason)
	if reason != nil {
		return &failure{reason}
	}
	return nil
}

// reserve refuses an attempt a limit stops, or counts it in flight for its source, user and pair.
func (c *Checker) reserve(pk pairKey) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.opts.Now()
	now, win := t.UnixNano(), int64(c.opts.Window)
	until := func(ns int64) string { return time.Unix(0, ns).Format(time.TimeOnly) }
	src := c.sources.add(pk.src)
	if now < src.blockedUntil {
		c.counters.whileLocked.Add(1)
		return fmt.Errorf("%w (blocked until %s)", ErrSourceBlocked, until(src.blockedUntil))
	}
	if src.fails.current(now, win) >= c.opts.SourceMaxFailures {
		c.counters.whileLocked.Add(1)
		return fmt.Errorf("%w (attempts in flight)", ErrSourceBlocked)
	}
	pair := c.pairs.add(pk)
	if now < pair.lockedUntil {
		c.counters.whileLocked.Add(1)
		return fmt.Errorf("%w (locked until %s)", ErrLocked, until(pair.lockedUntil))
	}
	if pair.fails.current(now, win) >= c.opts.MaxFailures {
		c.counters.whileLocked.Add(1)
		return fmt.Errorf("%w (attempts in flight)", ErrLocked)
	}
	user := c.users.add(pk.user)
	if user.fails.current(now, win) >= c.opts.UserSlowAfter {
		if trusted := c.trusted.get(pk); trusted == nil || now >= *trusted {
			if now < user.nextSlot {
				c.counters.slowed.Add(1)
				return fmt.Errorf("%w (next at %s)", ErrSlowedDown, until(user.nextSlot))
			}
			user.nextSlot = now + int64(c.opts.UserSpacing)
		}
	}
	src.fails.inflight++
	pair.fails.inflight++
	user.fails.inflight++
	return nil
}

// verify does the attempt's work: every factor it asks for is computed, whatever the others gave.
func (c *Checker) verify(ctx context.Context, a *Attempt) error {
	var pwErr, codeErr error
	if a.CheckPassword {
		pwErr = c.compare(ctx, a.Hash, a.Password)
		if errors.Is(pwErr, ErrBusy) {
			c.counters.busy.Add(1)
			return pwErr
		}
	}
	var step uint64
	if a.CheckCode {
		step, codeErr = c.match(a.Secret, a.Code)
	}
	switch {
	case a.Refuse != nil:
		return a.Refuse
	case pwErr != nil:
		c.counters.wrongPasswd.Add(1)
		return pwErr
	case codeErr != nil:
		c.counters.wrongCodes.Add(1)
		return codeErr
	}
	if a.CheckCode {
		return c.consume(a.User, step)
	}
	return nil
}

// counted says whether a failure counts toward the limits: a login refused for want of a bcrypt slot, or because
// its step could not be saved, checked nothing the client could have got wrong.
func counted(reason error) bool {
	return !errors.Is(reason, ErrBusy) && !errors.Is(reason, ErrReplayState)
}

// compare compares a password with a bcrypt hash, or with the decoy when the hash is not one, within the bound
// on concurrent comparisons.
func (c *Checker) compare(ctx context.Context, hash, password string) error {
	h := []byte(hash)
	cost, err := bcrypt.Cost(h)
	if err == nil {
		c.cost.Store(int32(cost))
	} else {
		h = c.decoyAt(int(c.cost.Load()))
	}
	timer := time.NewTimer(c.opts.HashWait)
	defer timer.Stop()
	select {
	case c.hashSem <- struct{}{}:
	case <-timer.C:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrBusy, ctx.Err())
	}
	match := bcrypt.CompareHashAndPassword(h, []byte(password)) == nil
	<-c.hashSem
	switch {
	case err != nil:
		return ErrNoPassword
	case !match:
		return ErrWrongPassword
	}
	return nil
}

// decoyAt is the decoy hash at a cost.
func (c *Checker) decoyAt(cost int) []byte {
	h := append([]byte(nil), c.decoy...) // "$2a$04$…"
	copy(h[4:6], fmt.Sprintf("%02d", cost))
	return h
}

// match finds the time step whose code was typed, computing the same codes for a user without a key (with the
// decoy's) as for one with.
func (c *Checker) match(secret []byte, code string) (uint64, error) {
	key := secret
	if len(key) == 0 {
		key = c.decoyKey
	}
	code = strings.TrimSpace(code)
	step := c.step(c.opts.Now())
	b32 := Base32(key)
	opts := hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	matched, found := uint64(0), false
	for _, s := range []uint64{step - 1, step, step + 1} {
		want, err := hotp.GenerateCodeCustom(b32, s, opts)
		if err == nil && len(code) == len(want) && subtle.ConstantTimeCompare([]byte(code), []byte(want)) == 1 {
			matched, found = s, true
		}
	}
	switch {
	case len(secret) == 0:
		return 0, ErrNoOTP
	case !found:
		return 0, ErrWrongCode
	}
	return matched, nil
}

// consume records step as the user's newest accepted one, refusing a step not newer than it, and saves the
// steps before the login goes on.
func (c *Checker) consume(user string, step uint64) error {
	c.mu.Lock()
	if step <= c.steps[user] || step <= c.floor {
		c.mu.Unlock()
		c.counters.replays.Add(1)
		return ErrReplayedCode
	}
	c.steps[user] = step
	c.mu.Unlock()
	if c.opts.Replay == nil {
		return nil
	}
	if err := c.save(); err != nil {
		// The step stays taken: refusing a good code once is better than accepting one twice.
		c.counters.replayErrs.Add(1)
		return fmt.Errorf("%w: %v", ErrReplayState, err)
	}
	return nil
}

// save writes the steps that still matter: a step older than the one before the current can refuse no code.
func (c *Checker) save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	cur := c.step(c.opts.Now())
	maps.DeleteFunc(c.steps, func(_ string, s uint64) bool { return s+1 < cur })
	snap := maps.Clone(c.steps)
	c.mu.Unlock()
	return c.opts.Replay.Save(snap)
}

// settle ends an attempt: no longer in flight, and a failure counted or a success recorded.
func (c *Checker) settle(pk pairKey, reason error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now, win := c.opts.Now().UnixNano(), int64(c.opts.Window)
	// Under a flood an entry may have been forgotten since reserve; it comes back with this attempt's result.
	src, user, pair := c.sources.add(pk.src), c.users.add(pk.user), c.pairs.add(pk)
	src.fails.settle()
	user.fails.settle()
	pair.fails.settle()
	switch {
	case reason == nil:
		c.counters.accepted.Add(1)
		pair.fails.n, pair.lockedUntil = 0, 0
		*c.trusted.add(pk) = now + int64(c.opts.TrustFor)
	case counted(reason):
		c.counters.failures.Add(1)
		pair.fails.fail(now, win)
		if int(pair.fails.n) >= c.opts.MaxFailures {
			pair.lockedUntil, pair.fails.n = now+int64(c.opts.LockFor), 0
			c.counters.lockouts.Add(1)
		}
		src.fails.fail(now, win)
		if int(src.fails.n) >= c.opts.SourceMaxFailures {
			src.blockedUntil, src.fails.n = now+int64(c.opts.LockFor), 0
			c.counters.sourceBlocks.Add(1)
		}
		user.fails.fail(now, win)
	}
}

// Unlock lifts a user's lockouts from every source and their slow-down (an admin's decision).
func (c *Checker) Unlock(user string) {
	uk := maphash.String(c.seed, user)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.pairs.all() {
		if k.user == uk {
			p.lockedUntil, p.fails.n = 0, 0
		}
	}
	if u := c.users.get(uk); u != nil {
		u.fails.n, u.nextSlot = 0, 0
	}
}

// Counters returns the counts since start.
func (c *Checker) Counters() Counters {
	k := &c.counters
	out := Counters{Accepted: k.accepted.Load(), Failures: k.failures.Load(), WrongCodes: k.wrongCodes.Load(), Replays: k.replays.Load(),
		WrongPasswd: k.wrongPasswd.Load(), Lockouts: k.lockouts.Load(), SourceBlocks: k.sourceBlocks.Load(), WhileLocked: k.whileLocked.Load(),
		SlowedDown: k.slowed.Load(), Busy: k.busy.Load(), ReplayStateErrors: k.replayErrs.Load()}
	c.mu.Lock()
	out.Tracked = c.sources.len() + c.users.len() + c.pairs.len() + c.trusted.len()
	c.mu.Unlock()
	return out
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

// lru is a map bounded to max entries: adding to a full one forgets the least recently used entry. Not safe for
// concurrent use (the Checker's mu guards it).
type lru[K comparable, V any] struct {
	max int
	m   map[K]*list.Element // of *lruItem[K, V]
	ll  list.List           // most recently used first
}

type lruItem[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, m: map[K]*list.Element{}}
}

// get returns k's value, marked as used, or nil.
func (t *lru[K, V]) get(k K) *V {
	e := t.m[k]
	if e == nil {
		return nil
	}
	t.ll.MoveToFront(e)
	return &e.Value.(*lruItem[K, V]).val
}

// add returns k's value, marked as used, adding a zero one if k has none.
func (t *lru[K, V]) add(k K) *V {
	if v := t.get(k); v != nil {
		return v
	}
	if t.ll.Len() >= t.max {
		old := t.ll.Back()
		t.ll.Remove(old)
		delete(t.m, old.Value.(*lruItem[K, V]).key)
	}
	it := &lruItem[K, V]{key: k}
	t.m[k] = t.ll.PushFront(it)
	return &it.val
}

func (t *lru[K, V]) len() int { return t.ll.Len() }

// all yields every entry, without marking any as used.
func (t *lru[K, V]) all() func(func(K, *V) bool) {
	return func(yield func(K, *V) bool) {
		for e := t.ll.Front(); e != nil; e = e.Next() {
			it := e.Value.(*lruItem[K, V])
			if !yield(it.key, &it.val) {
				return
			}
		}
	}
}
