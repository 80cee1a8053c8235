package userauth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"golang.org/x/crypto/bcrypt"
)

var secret = []byte("12345678901234567890") // RFC 6238 appendix B's SHA-1 key

var (
	home     = netip.MustParseAddr("203.0.113.5")
	stranger = netip.MustParseAddr("198.51.100.7")
)

func codeAt(t *testing.T, tm time.Time) string {
	t.Helper()
	c, err := hotp.GenerateCodeCustom(Base32(secret), uint64(tm.Unix())/30, hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clock is a fake clock for a Checker.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 23, 9, 0, 10, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func hashOf(t testing.TB, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// pw is a password login of user from src.
func pw(user string, src netip.Addr, hash, typed string) Attempt {
	return Attempt{User: user, Source: src, CheckPassword: true, Hash: hash, Password: typed}
}

// code is a TOTP login of user from src.
func code(user string, src netip.Addr, key []byte, typed string) Attempt {
	return Attempt{User: user, Source: src, CheckCode: true, Secret: key, Code: typed}
}

func TestRFC6238Vectors(t *testing.T) {
	// RFC 6238 appendix B, SHA-1, the last six digits of the eight-digit codes.
	for _, v := range []struct {
		unix int64
		code string
	}{{59, "287082"}, {1111111109, "081804"}, {1234567890, "005924"}, {2000000000, "279037"}} {
		now := time.Unix(v.unix, 0)
		c := New(Options{Now: func() time.Time { return now }})
		if err := c.Check(context.Background(), code("u", home, secret, v.code)); err != nil {
			t.Errorf("T=%d code %s: %v", v.unix, v.code, err)
		}
	}
}

var (
	errUnknownUser = errors.New("no such user")
	errDisabled    = errors.New("user disabled")
)

// TestEveryFailureLooksTheSame: whatever the reason, the error is ErrLoginFailed to the client, names the reason
// for the logs, and counts as a failure.
func TestEveryFailureLooksTheSame(t *testing.T) {
	ck := newClock()
	hash := hashOf(t, "s3cret", bcrypt.MinCost)
	now := ck.Now()
	for _, tc := range []struct {
		name string
		a    Attempt
		want error // nil: accepted
	}{
		{"right password", pw("carol", home, hash, "s3cret"), nil},
		{"wrong password", pw("carol", home, hash, "guess"), ErrWrongPassword},
		{"no password set", pw("carol", home, "", "s3cret"), ErrNoPassword},
		{"unknown user", Attempt{User: "nobody", Source: home, CheckPassword: true, Password: "x", Refuse: errUnknownUser}, errUnknownUser},
		{"disabled user, right password", Attempt{User: "carol", Source: home, CheckPassword: true, Hash: hash, Password: "s3cret", Refuse: errDisabled}, errDisabled},
		{"current code", code("alice", home, secret, codeAt(t, now)), nil},
		{"one step late", code("alice", home, secret, codeAt(t, now.Add(-30*time.Second))), nil},
		{"one step early", code("alice", home, secret, codeAt(t, now.Add(30*time.Second))), nil},
		{"two steps late", code("alice", home, secret, codeAt(t, now.Add(-61*time.Second))), ErrWrongCode},
		{"wrong code", code("alice", home, secret, "000000"), ErrWrongCode},
		{"no key issued", code("mallory", home, nil, codeAt(t, now)), ErrNoOTP},
		{"password and code", Attempt{User: "carol", Source: home, CheckPassword: true, Hash: hash, Password: "s3cret", CheckCode: true, Secret: secret, Code: codeAt(t, now)}, nil},
		{"right password, wrong code", Attempt{User: "carol", Source: home, CheckPassword: true, Hash: hash, Password: "s3cret", CheckCode: true, Secret: secret, Code: "000000"}, ErrWrongCode},
		{"wrong password, right code", Attempt{User: "carol", Source: home, CheckPassword: true, Hash: hash, Password: "x", CheckCode: true, Secret: secret, Code: codeAt(t, now)}, ErrWrongPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Options{Now: ck.Now})
			c.cost.Store(int32(bcrypt.MinCost)) // as after checking `hash`: decoys then cost the same
			err := c.Check(context.Background(), tc.a)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := c.Counters(); got.Accepted != 1 || got.Failures != 0 {
					t.Errorf("counters %+v", got)
				}
				return
			}
			if !errors.Is(err, ErrLoginFailed) || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.want.Error()) {
				t.Fatalf("error %v, want ErrLoginFailed wrapping %v", err, tc.want)
			}
			if got := c.Counters(); got.Failures != 1 || got.Accepted != 0 {
				t.Errorf("counters %+v, want one failure", got)
			}
		})
	}
}

// TestCodeUsedOnce: a code is accepted once; an earlier step's code is refused after a later one; a code that came
// with a wrong password is not used up.
func TestCodeUsedOnce(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now})
	hash := hashOf(t, "pw", bcrypt.MinCost)
	ctx := context.Background()
	now := ck.Now()
	cur := codeAt(t, now)
	both := func(password, otp string) Attempt {
		return Attempt{User: "alice", Source: home, CheckPassword: true, Hash: hash, Password: password, CheckCode: true, Secret: secret, Code: otp}
	}
	if err := c.Check(ctx, both("wrong", cur)); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := c.Check(ctx, both("pw", cur)); err != nil {
		t.Fatalf("the code that came with a wrong password: %v", err)
	}
	if err := c.Check(ctx, both("pw", cur)); !errors.Is(err, ErrReplayedCode) {
		t.Fatalf("the same code twice: %v", err)
	}
	if err := c.Check(ctx, both("pw", codeAt(t, now.Add(-30*time.Second)))); !errors.Is(err, ErrReplayedCode) {
		t.Fatalf("the previous step's code after the current one: %v", err)
	}
	ck.add(30 * time.Second)
	if err := c.Check(ctx, both("pw", codeAt(t, ck.Now()))); err != nil {
		t.Fatalf("the next step's code: %v", err)
	}
	if got := c.Counters(); got.Replays != 2 || got.Accepted != 2 || got.Failures != 3 {
		t.Fatalf("counters %+v", got)
	}
}

// TestLockoutIsPerUserAndSource: failures from one source lock the user out there only; the user elsewhere is not
// affected; IPv6 sources are their /64.
func TestLockoutIsPerUserAndSource(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now})
	hash := hashOf(t, "s3cret", bcrypt.MinCost)
	ctx := context.Background()
	v6 := netip.MustParseAddr("2001:db8:1:2::10")
	v6SameNet := netip.MustParseAddr("2001:db8:1:2:ffff::1")
	v6Other := netip.MustParseAddr("2001:db8:1:3::10")
	steps := []struct {
		what string
		a    Attempt
		want error
	}{
		{"1st wrong", pw("alice", stranger, hash, "a"), ErrWrongPassword},
		{"2nd wrong", pw("alice", stranger, hash, "b"), ErrWrongPassword},
		{"3rd wrong", pw("alice", stranger, hash, "c"), ErrWrongPassword},
		{"4th wrong", pw("alice", stranger, hash, "d"), ErrWrongPassword},
		{"5th wrong", pw("alice", stranger, hash, "e"), ErrWrongPassword},
		{"the right password from the locked source", pw("alice", stranger, hash, "s3cret"), ErrLocked},
		{"alice at home", pw("alice", home, hash, "s3cret"), nil},
		{"bob from the locked source", pw("bob", stranger, hash, "s3cret"), nil},
		{"an IPv4-mapped form of the locked source", pw("alice", netip.AddrFrom16(stranger.As16()), hash, "s3cret"), ErrLocked},
	}
	for range 5 {
		steps = append(steps, struct {
			what string
			a    Attempt
			want error
		}{"wrong from an IPv6 /64", pw("alice", v6, hash, "x"), ErrWrongPassword})
	}
	steps = append(steps, []struct {
		what string
		a    Attempt
		want error
	}{
		{"another address of the same /64", pw("alice", v6SameNet, hash, "s3cret"), ErrLocked},
		{"another /64", pw("alice", v6Other, hash, "s3cret"), nil},
	}...)
	for _, s := range steps {
		err := c.Check(ctx, s.a)
		if (s.want == nil) != (err == nil) || (s.want != nil && !errors.Is(err, s.want)) {
			t.Fatalf("%s: %v, want %v", s.what, err, s.want)
		}
	}
	if got := c.Counters(); got.Lockouts != 2 || got.WhileLocked != 3 {
		t.Errorf("counters %+v", got)
	}
	// The lock ends after LockFor, or when an admin lifts it.
	ck.add(14 * time.Minute)
	if err := c.Check(ctx, pw("alice", stranger, hash, "s3cret")); !errors.Is(err, ErrLocked) {
		t.Fatalf("before the lock ends: %v", err)
	}
	c.Unlock("alice")
	if err := c.Check(ctx, pw("alice", v6, hash, "s3cret")); err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	ck.add(2 * time.Minute)
	if err := c.Check(ctx, pw("alice", stranger, hash, "s3cret")); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}

// TestSourceBlockedAcrossNames: a source that fails with many user names is blocked for every name, the real
// users' included; other sources are not.
func TestSourceBlockedAcrossNames(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now, SourceMaxFailures: 30})
	hash := hashOf(t, "s3cret", bcrypt.MinCost)
	ctx := context.Background()
	for i := range 30 {
		if err := c.Check(ctx, code(fmt.Sprintf("made-up-%d", i), stranger, nil, "123456")); !errors.Is(err, ErrNoOTP) {
			t.Fatalf("name %d: %v", i, err)
		}
	}
	if err := c.Check(ctx, pw("alice", stranger, hash, "s3cret")); !errors.Is(err, ErrSourceBlocked) || !errors.Is(err, ErrLoginFailed) {
		t.Fatalf("the 31st attempt from the source: %v", err)
	}
	if err := c.Check(ctx, pw("alice", home, hash, "s3cret")); err != nil {
		t.Fatalf("another source: %v", err)
	}
	if got := c.Counters(); got.SourceBlocks != 1 || got.Failures != 30 {
		t.Errorf("counters %+v", got)
	}
	ck.add(15 * time.Minute)
	if err := c.Check(ctx, pw("alice", stranger, hash, "s3cret")); err != nil {
		t.Fatalf("after the block: %v", err)
	}
}

// TestManySourcesSlowNewSourcesOnly: guesses at one user from many sources, each under its limits, space the
// attempts of every source the user has not logged in from; the user's own recent source is not slowed.
func TestManySourcesSlowNewSourcesOnly(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now, UserSlowAfter: 20, UserSpacing: 10 * time.Second})
	hash := hashOf(t, "s3cret", bcrypt.MinCost)
	ctx := context.Background()
	if err := c.Check(ctx, pw("alice", home, hash, "s3cret")); err != nil {
		t.Fatal(err)
	}
	bot := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range 20 {
		if err := c.Check(ctx, pw("alice", bot(i), hash, "guess")); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	laptop, phone := netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("198.51.100.21")
	for _, s := range []struct {
		what  string
		wait  time.Duration
		a     Attempt
		slows bool
	}{
		{"a new source takes the slot", 0, pw("alice", laptop, hash, "s3cret"), false},
		{"another new source right after", 0, pw("alice", phone, hash, "s3cret"), true},
		{"a guess right after", 0, pw("alice", bot(99), hash, "guess"), true},
		{"the home source", 0, pw("alice", home, hash, "s3cret"), false},
		{"the home source again", 0, pw("alice", home, hash, "s3cret"), false},
		{"the new source once spaced", 10 * time.Second, pw("alice", phone, hash, "s3cret"), false},
		{"bob is not slowed", 0, pw("bob", bot(98), hash, "s3cret"), false},
	} {
		ck.add(s.wait)
		err := c.Check(ctx, s.a)
		if slowed := errors.Is(err, ErrSlowedDown); slowed != s.slows || (!s.slows && err != nil) {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
	if got := c.Counters(); got.SlowedDown != 2 {
		t.Errorf("counters %+v", got)
	}
	// The slow-down ends with the window of failures.
	ck.add(10 * time.Minute)
	for range 3 {
		if err := c.Check(ctx, pw("alice", laptop, hash, "s3cret")); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	}
}

// TestParallelGuessesCountedInFlight: of 40 guesses at once, only the limit's worth are hashed; an attempt counts
// as a failure from its start.
func TestParallelGuessesCountedInFlight(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now, MaxFailures: 5, HashConcurrency: 4})
	hash := hashOf(t, "s3cret", 8)
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Go(func() { errs[i] = c.Check(context.Background(), pw("alice", stranger, hash, fmt.Sprint("guess", i))) })
	}
	wg.Wait()
	locked := 0
	for _, err := range errs {
		if errors.Is(err, ErrLocked) {
			locked++
		}
	}
	if got := c.Counters(); got.WrongPasswd != 5 || locked != 35 {
		t.Fatalf("%d guesses hashed, %d refused unchecked; want 5 and 35", got.WrongPasswd, locked)
	}
}

// TestHashSlotsWaitBounded: with every bcrypt slot taken, an attempt waits HashWait at most and is refused,
// without counting as a failure.
func TestHashSlotsWaitBounded(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now, HashConcurrency: 1, HashWait: 50 * time.Millisecond, MaxFailures: 2})
	hash := hashOf(t, "s3cret", bcrypt.MinCost)
	c.hashSem <- struct{}{} // a comparison that does not end
	for range 3 {
		start := time.Now()
		err := c.Check(context.Background(), pw("alice", home, hash, "s3cret"))
		if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrLoginFailed) {
			t.Fatalf("with no slot free: %v", err)
		}
		if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
			t.Fatalf("waited %v, want about 50ms", d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Check(ctx, pw("alice", home, hash, "s3cret")); !errors.Is(err, ErrBusy) {
		t.Fatalf("with the context ended: %v", err)
	}
	<-c.hashSem
	if err := c.Check(context.Background(), pw("alice", home, hash, "s3cret")); err != nil {
		t.Fatalf("refusals for want of a slot locked the user out: %v", err)
	}
	if got := c.Counters(); got.Busy != 4 || got.Failures != 0 {
		t.Errorf("counters %+v", got)
	}
}

// TestDecoyHashCostsTheSame: an unknown user is compared with a decoy of the real hashes' cost, so the check takes
// as long as a known user's.
func TestDecoyHashCostsTheSame(t *testing.T) {
	c := New(Options{})
	if got, err := bcrypt.Cost(c.decoyAt(int(c.cost.Load()))); err != nil || got != DecoyCost {
		t.Fatalf("decoy cost before any real hash: %d %v", got, err)
	}
	const cost = 8
	hash := hashOf(t, "s3cret", cost)
	unknown := Attempt{User: "nobody", CheckPassword: true, Password: "s3cret", Refuse: errUnknownUser}
	timeOf := func(a Attempt) time.Duration {
		best := time.Hour
		for i := range 3 {
			a.Source = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
			start := time.Now()
			_ = c.Check(context.Background(), a)
			best = min(best, time.Since(start))
		}
		return best
	}
	known := timeOf(pw("carol", home, hash, "guess"))
	if got, err := bcrypt.Cost(c.decoyAt(int(c.cost.Load()))); err != nil || got != cost {
		t.Fatalf("decoy cost after a cost %d hash: %d %v", cost, got, err)
	}
	if u := timeOf(unknown); u < known/2 {
		t.Fatalf("an unknown user took %v, a known one %v", u, known)
	}
	noHash := timeOf(pw("dave", home, "", "guess"))
	if noHash < known/2 {
		t.Fatalf("a user without a password took %v, one with %v", noHash, known)
	}
}

// TestStateIsBounded: 200,000 made-up user names from as many sources leave at most MaxTracked entries per table.
func TestStateIsBounded(t *testing.T) {
	ck := newClock()
	c := New(Options{Now: ck.Now})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pad := strings.Repeat("x", 100)
	for i := range 200_000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		_ = c.Check(context.Background(), code(fmt.Sprint("made-up-user-", i, pad), src, nil, "123456"))
		if i%1000 == 0 {
			ck.add(time.Second)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	got := c.Counters()
	if got.Failures != 200_000 || got.Tracked > 4*16384 {
		t.Fatalf("counters %+v, want 200000 failures and at most %d entries", got, 4*16384)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d entries, heap grew by %.1f MiB", got.Tracked, float64(grown)/(1<<20))
	if grown > 24<<20 {
		t.Fatalf("the heap grew by %.1f MiB", float64(grown)/(1<<20))
	}
	runtime.KeepAlive(c)
}

// memStore is a ReplayStore in memory, whose loads and saves can be made to fail.
type memStore struct {
	mu              sync.Mutex
	steps           map[string]uint64
	failLoad, fail  bool
	saves           int
	lastSavedLength int
}

func (m *memStore) Load() (map[string]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failLoad {
		return nil, errors.New("unreadable")
	}
	return maps.Clone(m.steps), nil
}

func (m *memStore) Save(steps map[string]uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.steps, m.saves, m.lastSavedLength = maps.Clone(steps), m.saves+1, len(steps)
	return nil
}

// TestReplayStateSurvivesRestart: a code accepted before a restart is refused after it.
func TestReplayStateSurvivesRestart(t *testing.T) {
	ck := newClock()
	store := &memStore{}
	ctx := context.Background()
	cur := codeAt(t, ck.Now())
	if err := New(Options{Now: ck.Now, Replay: store}).Check(ctx, code("alice", home, secret, cur)); err != nil {
		t.Fatal(err)
	}
	restarted := New(Options{Now: ck.Now, Replay: store})
	if err := restarted.Check(ctx, code("alice", home, secret, cur)); !errors.Is(err, ErrReplayedCode) {
		t.Fatalf("the same code after a restart: %v", err)
	}
	if err := restarted.Check(ctx, code("bob", home, secret, cur)); err != nil {
		t.Fatalf("another user's code: %v", err)
	}
	// Steps that can refuse no code any more are not kept.
	ck.add(2 * time.Minute)
	if err := restarted.Check(ctx, code("carol", home, secret, codeAt(t, ck.Now()))); err != nil {
		t.Fatal(err)
	}
	if _, kept := store.steps["alice"]; kept || len(store.steps) != 1 {
		t.Fatalf("stored steps %v, want carol's only", store.steps)
	}
}

// TestReplayStateFailsClosed: a code whose step cannot be saved is refused (and stays used); steps that cannot be
// loaded make every code of the current window count as used.
func TestReplayStateFailsClosed(t *testing.T) {
	ck := newClock()
	ctx := context.Background()
	store := &memStore{fail: true}
	c := New(Options{Now: ck.Now, Replay: store, MaxFailures: 1})
	cur := codeAt(t, ck.Now())
	if err := c.Check(ctx, code("alice", home, secret, cur)); !errors.Is(err, ErrReplayState) || !errors.Is(err, ErrLoginFailed) {
		t.Fatalf("unsaved step: %v", err)
	}
	store.fail = false
	if err := c.Check(ctx, code("alice", home, secret, cur)); !errors.Is(err, ErrReplayedCode) {
		t.Fatalf("the code whose save failed, again (an unsaved step must not lock out, nor be reusable): %v", err)
	}

	lost := New(Options{Now: ck.Now, Replay: &memStore{failLoad: true}})
	if err := lost.Check(ctx, code("bob", home, secret, codeAt(t, ck.Now().Add(30*time.Second)))); !errors.Is(err, ErrReplayedCode) {
		t.Fatalf("a code of the window after losing the steps: %v", err)
	}
	ck.add(60 * time.Second)
	if err := lost.Check(ctx, code("bob", home, secret, codeAt(t, ck.Now().Add(30*time.Second)))); err != nil {
		t.Fatalf("a code of a later step: %v", err)
	}
	if got := lost.Counters().ReplayStateErrors; got != 1 {
		t.Errorf("replay state errors %d", got)
	}
}

func TestLRUForgetsLeastRecentlyUsed(t *testing.T) {
	l := newLRU[int, int](3)
	*l.add(1), *l.add(2), *l.add(3) = 10, 20, 30
	l.get(1) // 2 is now the least recently used
	*l.add(4) = 40
	if l.get(2) != nil || l.len() != 3 || *l.get(1) != 10 || *l.get(3) != 30 || *l.get(4) != 40 {
		t.Fatalf("after adding a 4th: len %d, 2 present %v", l.len(), l.get(2) != nil)
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
	if err := New(Options{}).Check(context.Background(), code("u", home, s, strings.TrimSpace(string(out)))); err != nil {
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
