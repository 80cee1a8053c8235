package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/appliance/config"
)

// fakeClock fires timers only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { was := !t.stopped; t.stopped = true; return was }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves time on and runs the timers that came due, synchronously.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// recordingApplier remembers what it was asked to apply and fails on request.
type recordingApplier struct {
	mu      sync.Mutex
	applied []string // host names it moved to
	failOn  string   // fail when asked to apply this host name
}

func (a *recordingApplier) Apply(_ context.Context, _, new *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if new.System.HostName == a.failOn {
		return errors.New("component refused")
	}
	a.applied = append(a.applied, new.System.HostName)
	return nil
}

func (a *recordingApplier) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.applied) == 0 {
		return ""
	}
	return a.applied[len(a.applied)-1]
}

type fixture struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	app   *recordingApplier
	s     *Store
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), clock: &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}, app: &recordingApplier{}}
	f.open()
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	def := &config.Config{}
	def.System.HostName = "default"
	s, err := Open(Options{Dir: f.dir, Applier: f.app, Default: def, Clock: f.clock, ArchiveSize: 5})
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
	f.t.Cleanup(s.Close)
	if err := s.Boot(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// commitHost sets the host name in the candidate and commits it.
func (f *fixture) commitHost(name string, confirm int) (Commit, error) {
	f.t.Helper()
	if err := f.s.Edit(func(c *config.Config) error { return c.Set([]string{"system", "host-name", name}) }); err != nil {
		f.t.Fatal(err)
	}
	return f.s.Commit(context.Background(), CommitRequest{Author: "tester", Comment: "to " + name, ConfirmMinutes: confirm})
}

func (f *fixture) mustCommitHost(name string, confirm int) Commit {
	f.t.Helper()
	c, err := f.commitHost(name, confirm)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) savedHost() string {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, "config.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := config.Unmarshal(data)
	if err != nil {
		f.t.Fatal(err)
	}
	return c.System.HostName
}

func TestFirstStartPersistsDefault(t *testing.T) {
	f := newFixture(t)
	if got := f.savedHost(); got != "default" {
		t.Fatalf("saved host name %q, want the default", got)
	}
	commits := f.s.Commits()
	if len(commits) != 1 || commits[0].Comment != "initial configuration" || commits[0].Author != "system" {
		t.Fatalf("archive after first start = %+v", commits)
	}
	if f.app.last() != "default" {
		t.Fatalf("Boot applied %q, want the default", f.app.last())
	}
	st, err := os.Stat(filepath.Join(f.dir, "config.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config.json mode = %v, %v; want 0600", st.Mode(), err)
	}
}

func TestCommitAppliesThenPersists(t *testing.T) {
	f := newFixture(t)
	c := f.mustCommitHost("gw1", 0)
	if c.Revision != 2 || c.Author != "tester" || c.Comment != "to gw1" {
		t.Fatalf("commit = %+v", c)
	}
	if f.app.last() != "gw1" || f.savedHost() != "gw1" || f.s.Running().System.HostName != "gw1" {
		t.Fatal("commit did not reach the applier, the disk and the running config")
	}
	if f.s.Changed() {
		t.Fatal("candidate differs from running right after a commit")
	}
	if _, err := f.s.Commit(context.Background(), CommitRequest{}); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("empty commit = %v, want ErrNoChanges", err)
	}
}

func TestInvalidCandidateIsRefusedWhole(t *testing.T) {
	f := newFixture(t)
	err := f.s.Edit(func(c *config.Config) error {
		if err := c.Set([]string{"system", "host-name", "bad_name"}); err != nil {
			return err
		}
		return c.Set([]string{"system", "static-routes", "0.0.0.0/0", "next-hop", "203.0.113.1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.s.Commit(context.Background(), CommitRequest{Author: "tester"})
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 2 {
		t.Fatalf("commit of an invalid candidate = %v, want both problems", err)
	}
	if f.app.last() != "default" || f.savedHost() != "default" || len(f.s.Commits()) != 1 {
		t.Fatal("an invalid commit touched the system or the disk")
	}
	if !f.s.Changed() {
		t.Fatal("the refused candidate was thrown away; the admin must be able to fix it")
	}
}

func TestApplyFailureKeepsRunning(t *testing.T) {
	f := newFixture(t)
	f.app.failOn = "doomed"
	if _, err := f.commitHost("doomed", 0); err == nil || !strings.Contains(err.Error(), "component refused") {
		t.Fatalf("commit = %v, want the applier's error", err)
	}
	if f.savedHost() != "default" || f.s.Running().System.HostName != "default" || len(f.s.Commits()) != 1 {
		t.Fatal("a failed apply changed the running or saved configuration")
	}
}

func TestPersistFailureReturnsSystemToSaved(t *testing.T) {
	f := newFixture(t)
	// A directory where config.json belongs makes the final rename fail, even for root.
	if err := os.Remove(filepath.Join(f.dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.dir, "config.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := f.commitHost("unsaved", 0); err == nil {
		t.Fatal("commit succeeded though it could not be saved")
	}
	if f.app.last() != "default" {
		t.Fatalf("after a failed save the system is at %q, want it back at the saved default", f.app.last())
	}
	if f.s.Running().System.HostName != "default" {
		t.Fatal("running config changed though the commit was not saved")
	}
}

func TestRollback(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("one", 0)
	f.mustCommitHost("two", 0)
	// Uncommitted edits are never thrown away by a rollback.
	if err := f.s.Edit(func(c *config.Config) error { return c.Set([]string{"system", "domain-name", "example.net"}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Rollback(context.Background(), 1, "tester"); !errors.Is(err, ErrUncommitted) {
		t.Fatalf("rollback with a dirty candidate = %v, want ErrUncommitted", err)
	}
	f.s.Discard()
	c, err := f.s.Rollback(context.Background(), 2, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if f.savedHost() != "default" || f.app.last() != "default" || !strings.Contains(c.Comment, "rollback 2") {
		t.Fatalf("rollback 2 gave %q (commit %+v), want the default", f.savedHost(), c)
	}
	if got := len(f.s.Commits()); got != 4 {
		t.Fatalf("archive holds %d commits, want 4 (a rollback is a commit)", got)
	}
	if _, err := f.s.Rollback(context.Background(), 99, "tester"); !errors.Is(err, ErrNoSuchRevision) {
		t.Fatalf("rollback 99 = %v", err)
	}
	if _, err := f.s.Rollback(context.Background(), 0, "tester"); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("rollback 0 = %v, want ErrNoChanges", err)
	}
}

func TestArchiveKeepsTheNewest(t *testing.T) {
	f := newFixture(t)
	for i := range 8 {
		f.mustCommitHost("h"+string(rune('a'+i)), 0)
	}
	commits := f.s.Commits()
	if len(commits) != 5 || commits[0].Comment != "to hh" || commits[4].Comment != "to hd" {
		t.Fatalf("archive = %+v, want the 5 newest, newest first", commits)
	}
	entries, _ := os.ReadDir(filepath.Join(f.dir, "archive"))
	if len(entries) != 5 {
		t.Fatalf("%d archive files on disk, want 5", len(entries))
	}
	c, _, err := f.s.Revision(4)
	if err != nil || c.System.HostName != "hd" {
		t.Fatalf("revision 4 = %v, %v", c, err)
	}
}

func TestCommitConfirmRevertsWithoutConfirm(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("stable", 0)
	f.mustCommitHost("risky", 2)
	if rev, _, ok := f.s.Pending(); !ok || rev != 3 {
		t.Fatalf("pending = %d %v, want revision 3 waiting", rev, ok)
	}
	f.clock.Advance(119 * time.Second)
	if f.savedHost() != "risky" {
		t.Fatal("reverted before the deadline")
	}
	f.clock.Advance(time.Second)
	if f.savedHost() != "stable" || f.app.last() != "stable" || f.s.Running().System.HostName != "stable" {
		t.Fatalf("after the deadline the appliance is at %q, want it back at stable", f.savedHost())
	}
	if f.s.Candidate().System.HostName != "stable" {
		t.Fatal("the candidate still holds the reverted config")
	}
	newest := f.s.Commits()[0]
	if newest.Author != "system" || !strings.Contains(newest.Comment, "revision 3 was not confirmed within 2 minute(s); reverted to revision 2") {
		t.Fatalf("revert commit = %+v", newest)
	}
	if _, _, ok := f.s.Pending(); ok {
		t.Fatal("still pending after the revert")
	}
}

func TestCommitConfirmKeptWhenConfirmed(t *testing.T) {
	for _, how := range []string{"confirm", "plain commit"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t)
			f.mustCommitHost("risky", 1)
			if how == "confirm" {
				if err := f.s.Confirm("tester"); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.s.Commit(context.Background(), CommitRequest{Author: "tester"}); err != nil {
				t.Fatalf("a plain commit with nothing new should confirm: %v", err)
			}
			f.clock.Advance(10 * time.Minute)
			if f.savedHost() != "risky" {
				t.Fatal("a confirmed commit was reverted")
			}
			if err := f.s.Confirm("tester"); !errors.Is(err, ErrNoPendingConfirm) {
				t.Fatalf("second confirm = %v", err)
			}
			if _, err := os.Stat(filepath.Join(f.dir, "confirm.json")); !os.IsNotExist(err) {
				t.Fatal("confirm.json left behind")
			}
		})
	}
}

func TestCommitConfirmSurvivesRestart(t *testing.T) {
	t.Run("deadline passed while stopped", func(t *testing.T) {
		f := newFixture(t)
		f.mustCommitHost("risky", 1)
		f.s.Close()
		f.clock.Advance(2 * time.Minute) // the closed store's timer does nothing
		if f.savedHost() != "risky" {
			t.Fatal("a closed store reverted")
		}
		f.open()
		if f.savedHost() != "default" || f.app.last() != "default" {
			t.Fatalf("after restart past the deadline: saved %q applied %q, want default", f.savedHost(), f.app.last())
		}
	})
	t.Run("deadline still ahead", func(t *testing.T) {
		f := newFixture(t)
		f.mustCommitHost("risky", 5)
		f.s.Close()
		f.clock.Advance(time.Minute)
		f.open()
		if f.app.last() != "risky" {
			t.Fatal("restart did not boot the pending config")
		}
		if _, _, ok := f.s.Pending(); !ok {
			t.Fatal("the pending confirm was lost across the restart")
		}
		f.clock.Advance(4 * time.Minute)
		if f.savedHost() != "default" {
			t.Fatal("the re-armed timer did not revert")
		}
	})
}

func TestRecoveryFromACrashMidCommit(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("one", 0)
	f.s.Close()
	// A crash after the archive entry of revision 3 was written but before config.json was renamed, with a
	// temporary file still lying around.
	next := f.s.Running()
	next.System.HostName = "never-running"
	body, _ := config.Marshal(next)
	entry := `{"commit":{"revision":3,"time":"2026-11-23T09:00:00Z","author":"tester"},"config":` + string(body) + `}`
	if err := os.WriteFile(filepath.Join(f.dir, "archive", "00000003.json"), []byte(entry), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, ".config.json.123.tmp"), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	if got := f.s.Running().System.HostName; got != "one" {
		t.Fatalf("running after recovery = %q, want one", got)
	}
	if c := f.s.Commits(); len(c) != 2 || c[0].Revision != 2 {
		t.Fatalf("archive after recovery = %+v, want the orphan out of the history", c)
	}
	// The orphan is set aside, not deleted; its number is never used again.
	if aside, _ := filepath.Glob(filepath.Join(f.dir, "archive", "00000003.json.interrupted-*")); len(aside) != 1 {
		t.Fatalf("the interrupted commit's entry is not kept aside: %v", aside)
	}
	if len(f.s.Notices()) != 0 {
		t.Fatalf("a crash mid-commit is ordinary recovery, not a notice: %q", f.s.Notices())
	}
	if _, err := os.Stat(filepath.Join(f.dir, ".config.json.123.tmp")); !os.IsNotExist(err) {
		t.Fatal("temporary file not removed")
	}
	if c := f.mustCommitHost("two", 0); c.Revision != 4 {
		t.Fatalf("next revision = %d, want 4", c.Revision)
	}
}

// TestHandEditedConfigIsRecorded: a config.json edited while torided was stopped becomes a new revision on top of
// the history, which stays whole and keeps counting.
func TestHandEditedConfigIsRecorded(t *testing.T) {
	f := newFixture(t)
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		f.mustCommitHost(h, 0)
	}
	f.s.Close()
	if err := os.WriteFile(filepath.Join(f.dir, "config.json"), []byte(`{"system":{"host-name":"edited"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	c := f.s.Commits()
	if f.s.Running().System.HostName != "edited" || f.app.last() != "edited" {
		t.Fatalf("hand-edited config: running %q, booted %q", f.s.Running().System.HostName, f.app.last())
	}
	if len(c) != 5 || c[0].Revision != 6 || c[0].Author != "found at start" || !strings.Contains(c[0].Comment, "differs from archive revision 5") {
		t.Fatalf("archive after a hand edit = %+v; want the 5 entries kept and revision 6 recording it", c)
	}
	if old, _, err := f.s.Revision(1); err != nil || old.System.HostName != "h4" {
		t.Fatalf("revision before the hand edit = %v, %v; want h4", old, err)
	}
}

// TestInvalidHandEditBootsAsFound: a config.json that parses but fails validation is the admin's newest intent;
// it is started as it is (best effort), recorded, and its problems are reported, instead of an older revision
// silently coming back.
func TestInvalidHandEditBootsAsFound(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("good", 0)
	f.s.Close()
	if err := os.WriteFile(filepath.Join(f.dir, "config.json"), []byte(`{"system":{"host-name":"bad_name"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	if f.s.Running().System.HostName != "bad_name" || f.app.last() != "bad_name" {
		t.Fatalf("running %q booted %q; want the configuration found", f.s.Running().System.HostName, f.app.last())
	}
	n := f.s.Notices()
	if len(n) != 1 || !strings.Contains(n[0], "system.host-name") || !strings.Contains(n[0], "fix it and commit") {
		t.Fatalf("notices = %q; want the problem named", n)
	}
	if c := f.s.Commits(); len(c) != 3 || c[0].Author != "found at start" {
		t.Fatalf("archive = %+v", c)
	}
	if _, err := f.commitHost("fixed", 0); err != nil {
		t.Fatalf("the admin cannot fix it: %v", err)
	}
}

// TestUnreadableConfigStartsFromTheArchive: a truncated or damaged config.json no longer stops the appliance:
// the newest archive entry runs, recorded as a new revision, the file is kept for inspection and the notice names
// it.
func TestUnreadableConfigStartsFromTheArchive(t *testing.T) {
	for name, damage := range map[string]func(data []byte) []byte{
		"truncated":     func(data []byte) []byte { return data[:len(data)/2] },
		"empty":         func([]byte) []byte { return nil },
		"unknown field": func([]byte) []byte { return []byte(`{"system":{"hostname":"x"}}`) },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.mustCommitHost("one", 0)
			f.mustCommitHost("two", 0)
			f.s.Close()
			path := filepath.Join(f.dir, "config.json")
			data, _ := os.ReadFile(path)
			broken := damage(data)
			if err := os.WriteFile(path, broken, 0o600); err != nil {
				t.Fatal(err)
			}
			f.open()
			if f.s.Running().System.HostName != "two" || f.app.last() != "two" || f.savedHost() != "two" {
				t.Fatalf("running %q booted %q saved %q; want the newest archive entry, two", f.s.Running().System.HostName, f.app.last(), f.savedHost())
			}
			kept, _ := filepath.Glob(path + ".unreadable-*")
			if len(kept) != 1 {
				t.Fatalf("the unreadable file is not kept: %v", kept)
			}
			if got, _ := os.ReadFile(kept[0]); !bytes.Equal(got, broken) {
				t.Fatal("the kept file is not what was found")
			}
			n := f.s.Notices()
			if len(n) != 1 || !strings.Contains(n[0], "config.json cannot be read") || !strings.Contains(n[0], kept[0]) ||
				!strings.Contains(n[0], "started from archive revision 3") {
				t.Fatalf("notices = %q; want the file, where it is kept and the revision started from", n)
			}
			c := f.s.Commits()
			if len(c) != 4 || c[0].Revision != 4 || c[0].Author != "found at start" || c[1].Comment != "to two" {
				t.Fatalf("archive = %+v; want the history whole and the recovery on top", c)
			}
			// The next start is clean.
			f.s.Close()
			f.open()
			if len(f.s.Notices()) != 0 || f.s.Running().System.HostName != "two" {
				t.Fatalf("second start: notices %q, running %q", f.s.Notices(), f.s.Running().System.HostName)
			}
		})
	}
}

// TestMissingConfigStartsFromTheArchive: config.json gone while the archive is not (removed by hand, or a crash
// between setting a broken one aside and writing the next) is no first start: the newest entry runs.
func TestMissingConfigStartsFromTheArchive(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("one", 0)
	f.s.Close()
	if err := os.Remove(filepath.Join(f.dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	f.open()
	if f.s.Running().System.HostName != "one" || f.savedHost() != "one" {
		t.Fatalf("running %q, want one", f.s.Running().System.HostName)
	}
	if n := f.s.Notices(); len(n) != 1 || !strings.Contains(n[0], "config.json is missing; started from archive revision 2") {
		t.Fatalf("notices = %q", n)
	}
	if c := f.s.Commits(); len(c) != 3 {
		t.Fatalf("archive = %+v", c)
	}
}

// TestNothingReadableStartsFromTheDefault: with config.json and every archive entry unreadable, the appliance
// still comes up (on the default configuration, so the API answers), and nothing is deleted.
func TestNothingReadableStartsFromTheDefault(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("one", 0)
	f.s.Close()
	for _, p := range []string{"config.json", "archive/00000001.json", "archive/00000002.json"} {
		if err := os.WriteFile(filepath.Join(f.dir, p), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.open()
	if f.s.Running().System.HostName != "default" {
		t.Fatalf("running %q, want the default", f.s.Running().System.HostName)
	}
	if n := f.s.Notices(); len(n) != 3 || !strings.Contains(n[2], "started from the default configuration") {
		t.Fatalf("notices = %q", n)
	}
	kept, _ := filepath.Glob(filepath.Join(f.dir, "*", "*.unreadable-*"))
	kept2, _ := filepath.Glob(filepath.Join(f.dir, "*.unreadable-*"))
	if len(kept)+len(kept2) != 3 {
		t.Fatalf("kept files: %v %v", kept, kept2)
	}
	if c := f.s.Commits(); len(c) != 1 || c[0].Revision != 3 {
		t.Fatalf("archive = %+v; want one new revision numbered after the unreadable ones", c)
	}
}

// TestUnreadableArchiveEntryIsKept: an archive entry that cannot be read is renamed aside and reported, never
// deleted; the rest of the history stays, and its number is not used again.
func TestUnreadableArchiveEntryIsKept(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("one", 0)
	f.mustCommitHost("two", 0)
	f.mustCommitHost("three", 0)
	f.s.Close()
	entry := filepath.Join(f.dir, "archive", "00000002.json")
	if err := os.WriteFile(entry, []byte(`{"commit":{"revision":2`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	if f.s.Running().System.HostName != "three" {
		t.Fatal("an old damaged entry changed what runs")
	}
	kept, _ := filepath.Glob(entry + ".unreadable-*")
	if len(kept) != 1 {
		t.Fatalf("the damaged entry was not kept aside: %v", kept)
	}
	if n := f.s.Notices(); len(n) != 1 || !strings.Contains(n[0], "archive revision 2 cannot be read") || !strings.Contains(n[0], kept[0]) {
		t.Fatalf("notices = %q", n)
	}
	var revs []int
	for _, c := range f.s.Commits() {
		revs = append(revs, c.Revision)
	}
	if !slices.Equal(revs, []int{4, 3, 1}) {
		t.Fatalf("revisions = %v, want 4 3 1", revs)
	}
	// Damage the newest entry too: the next commit still gets a new number.
	f.s.Close()
	if err := os.WriteFile(filepath.Join(f.dir, "archive", "00000004.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	if c := f.mustCommitHost("four", 0); c.Revision != 6 {
		t.Fatalf("next revision = %d, want 6 (4 is kept aside, 5 recorded what was found)", c.Revision)
	}
}

// TestRecoveryKeepsAWaitingConfirm: a commit-confirm waiting when config.json was damaged still returns to the
// configuration before it at its deadline.
func TestRecoveryKeepsAWaitingConfirm(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("stable", 0)
	f.mustCommitHost("risky", 5)
	f.s.Close()
	if err := os.WriteFile(filepath.Join(f.dir, "config.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	if f.s.Running().System.HostName != "risky" {
		t.Fatalf("running %q", f.s.Running().System.HostName)
	}
	if _, _, ok := f.s.Pending(); !ok {
		t.Fatal("the recovery dropped the waiting commit-confirm")
	}
	f.clock.Advance(5 * time.Minute)
	if f.savedHost() != "stable" {
		t.Fatalf("after the deadline the appliance is at %q, want stable", f.savedHost())
	}
}

func TestConcurrentEditsAndCommits(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				name := "w" + string(rune('a'+w)) + string(rune('a'+i))
				_ = f.s.Edit(func(c *config.Config) error { return c.Set([]string{"system", "host-name", name}) })
				_, _ = f.s.Commit(context.Background(), CommitRequest{Author: name})
				_ = f.s.Running()
				_ = f.s.Commits()
			}
		}()
	}
	wg.Wait()
	if f.savedHost() != f.s.Running().System.HostName {
		t.Fatal("saved and running configs disagree after concurrent commits")
	}
}

func TestChangeLeavesPendingEditsPending(t *testing.T) {
	f := newFixture(t)
	// The admin is half-way through an edit.
	if err := f.s.Edit(func(c *config.Config) error { return c.Set([]string{"system", "domain-name", "example.net"}) }); err != nil {
		t.Fatal(err)
	}
	c, err := f.s.Change(context.Background(), "api", "add a user", func(c *config.Config) error {
		return c.Set([]string{"users", "alice", "full-name", "Alice"})
	})
	if err != nil {
		t.Fatal(err)
	}
	run := f.s.Running()
	if run.Users["alice"] == nil || run.System.DomainName != "" {
		t.Fatalf("the change committed %+v; want only the API's edit", run)
	}
	cand := f.s.Candidate()
	if cand.Users["alice"] == nil || cand.System.DomainName != "example.net" {
		t.Fatal("the candidate lost either the pending edit or the API's change")
	}
	if c.Author != "api" || f.s.Commits()[0].Comment != "add a user" {
		t.Fatalf("commit %+v", c)
	}
	// A change that fails validation commits nothing.
	if _, err := f.s.Change(context.Background(), "api", "bad", func(c *config.Config) error {
		return c.Set([]string{"system", "host-name", "bad_name"})
	}); err == nil {
		t.Fatal("an invalid change was committed")
	}
	if _, err := f.s.Change(context.Background(), "api", "noop", func(c *config.Config) error { return nil }); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("empty change: %v", err)
	}
}

func TestChangeKeepsACommitConfirmWaiting(t *testing.T) {
	f := newFixture(t)
	f.mustCommitHost("risky", 1)
	if _, err := f.s.Change(context.Background(), "api", "user", func(c *config.Config) error {
		return c.Set([]string{"users", "bob"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.s.Pending(); !ok {
		t.Fatal("an API change confirmed a waiting commit-confirm")
	}
	f.s.Close()
	f.open() // the waiting confirm survives a restart after the change
	if _, _, ok := f.s.Pending(); !ok {
		t.Fatal("the waiting commit-confirm was lost across a restart")
	}
	f.clock.Advance(2 * time.Minute)
	if f.savedHost() != "default" {
		t.Fatal("the timeout did not revert")
	}
}

// TestCommitCounts: applied commits and refused or failed ones are counted apart; a commit with nothing to commit
// is neither.
func TestCommitCounts(t *testing.T) {
	f := newFixture(t)
	ok0, failed0 := f.s.CommitCounts()
	want := func(step string, ok, failed uint64) {
		t.Helper()
		if gotOK, gotFailed := f.s.CommitCounts(); gotOK-ok0 != ok || gotFailed-failed0 != failed {
			t.Errorf("%s: %d applied, %d failed; want %d, %d", step, gotOK-ok0, gotFailed-failed0, ok, failed)
		}
	}
	f.mustCommitHost("gw1", 0)
	want("a commit", 1, 0)
	if _, err := f.s.Commit(context.Background(), CommitRequest{}); !errors.Is(err, ErrNoChanges) {
		t.Fatal(err)
	}
	want("nothing to commit", 1, 0)
	if _, err := f.commitHost("bad_name", 0); err == nil {
		t.Fatal("an invalid host name was committed")
	}
	want("an invalid candidate", 1, 1)
	f.app.failOn = "doomed"
	if _, err := f.commitHost("doomed", 0); err == nil {
		t.Fatal("a failed apply was committed")
	}
	want("a failed apply", 1, 2)
}
