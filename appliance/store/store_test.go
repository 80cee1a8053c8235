package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
		t.Fatalf("archive after recovery = %+v, want the orphan dropped", c)
	}
	if _, err := os.Stat(filepath.Join(f.dir, ".config.json.123.tmp")); !os.IsNotExist(err) {
		t.Fatal("temporary file not removed")
	}
	// The next commit reuses revision 3 cleanly.
	if c := f.mustCommitHost("two", 0); c.Revision != 3 {
		t.Fatalf("next revision = %d", c.Revision)
	}
}

func TestHandEditedConfigIsRecorded(t *testing.T) {
	f := newFixture(t)
	f.s.Close()
	if err := os.WriteFile(filepath.Join(f.dir, "config.json"), []byte(`{"system":{"host-name":"edited"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.open()
	c := f.s.Commits()
	if f.s.Running().System.HostName != "edited" || c[0].Comment != "configuration found on disk" {
		t.Fatalf("hand-edited config: running %q, newest commit %+v", f.s.Running().System.HostName, c[0])
	}
}

func TestCorruptConfigFailsOpenClearly(t *testing.T) {
	f := newFixture(t)
	f.s.Close()
	if err := os.WriteFile(filepath.Join(f.dir, "config.json"), []byte(`{"system":{"hostname":"x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: f.dir, Applier: f.app, Clock: f.clock})
	if err == nil || !strings.Contains(err.Error(), `unknown field "hostname"`) || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("Open of a corrupt config = %v; want the file and the field named", err)
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
