// Package store is the appliance's transactional configuration store: one shared candidate that set and delete
// edit, and the running configuration that only a commit changes.
//
// A commit validates the candidate (every problem at once), has the Applier turn the system from the running
// configuration into the candidate (the Applier leaves the system as it was if it fails), and only then persists
// the new running configuration. Persisting is atomic (temp file, fsync, rename, fsync of the directory), so after
// a crash at any moment the saved configuration is either the previous running one or the new one, never a mix.
//
// On disk, in the state directory:
//
//	config.json           the running configuration (the commit point: its rename makes a commit durable)
//	archive/NNNNNNNN.json the last 100 commits, each with its time, author, comment and whole configuration
//	confirm.json          present while a commit-confirm waits for its confirmation
//	*.unreadable-TIME     a file Open could not read, kept for inspection (see Open)
//
// Every file holds the secrets sealed by the SecretCodec the appliance gives; the store itself knows no crypto.
//
// Locking: commitMu serializes commits, rollbacks, confirmations and reverts; mu guards the candidate and the
// archive index and is held only briefly, so edits and reads never wait for a slow apply. A Store is safe for
// concurrent use.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"toride/appliance/atomicfile"
	"toride/appliance/config"
)

// Errors a caller tells apart with errors.Is.
var (
	ErrNoChanges          = errors.New("store: no configuration changes to commit")
	ErrUncommitted        = errors.New("store: the candidate has uncommitted changes; commit or discard them first")
	ErrNoSuchRevision     = errors.New("store: no such revision in the commit archive")
	ErrNoPendingConfirm   = errors.New("store: no commit is waiting for confirmation")
	ErrConfirmUnsupported = errors.New("store: commit-confirm needs a time of at least 1 minute")
)

// ApplyError is a commit the Applier refused; the system is as it was (unless the error says otherwise).
type ApplyError struct{ Err error }

func (e *ApplyError) Error() string { return e.Err.Error() }
func (e *ApplyError) Unwrap() error { return e.Err }

// Applier turns the system from the old effective configuration into the new one. If it fails it must leave the
// system in the old one (the orchestrator rolls every component back) and say why.
type Applier interface {
	Apply(ctx context.Context, old, new *config.Config) error
}

// Booter is an Applier that applies the first configuration at start differently from a commit: best effort,
// so one failing part does not leave the whole appliance unconfigured.
type Booter interface {
	Boot(ctx context.Context, cfg *config.Config) error
}

// Clock is the store's view of time, replaced in tests.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) interface{ Stop() bool }
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	return time.AfterFunc(d, f)
}

// Options configure a Store.
type Options struct {
	Dir         string         // state directory; created 0700 if missing
	Applier     Applier        // required
	Default     *config.Config // the configuration of a new appliance (nil: empty)
	ArchiveSize int            // commits kept (0: 100)
	Clock       Clock          // nil: the real clock
	ConfirmUnit time.Duration  // what "minute" means for commit-confirm (0: a minute; tests shorten it)
	Logger      *slog.Logger   // nil: discard
	// Validate checks an effective configuration; nil means config.Validate. The appliance adds the checks that
	// need its running components (a CRL older than the one in force).
	Validate func(*config.Config) config.Problems
	// Secrets turns the configuration's secrets into what the files hold; nil stores them as they are.
	Secrets SecretCodec
}

// SecretCodec seals secrets at rest: every file the store writes (config.json and each archive entry) holds the
// secret leaves (config.Secret) as Seal made them, and the store opens them when it reads. path is the leaf's
// place, as set lines spell it, so a codec can bind a sealed value to it. Memory, the Applier and Validate only
// ever see the values themselves. A SecretCodec must be safe for concurrent use.
type SecretCodec interface {
	// Seal returns the at-rest form of a secret. A value that already has that form (one that did not open, kept
	// as found) is returned as it is, never sealed twice.
	Seal(path []string, value string) string
	// Open returns the secret an at-rest form holds. current is false for a form an older version wrote (in
	// clear): the store then rewrites the file. An error (sealed by another appliance, damaged) leaves the stored
	// form as the value; the store reports it.
	Open(path []string, stored string) (value string, current bool, err error)
}

// Commit describes one entry of the commit archive.
type Commit struct {
	Revision int       `json:"revision"`
	Time     time.Time `json:"time"`
	Author   string    `json:"author"`
	Comment  string    `json:"comment,omitempty"`
}

type archived struct {
	Commit Commit          `json:"commit"`
	Config json.RawMessage `json:"config"`
}

type pendingConfirm struct {
	Revision int       `json:"revision"` // the commit waiting for confirmation
	Previous int       `json:"previous"` // the revision a timeout returns to
	Deadline time.Time `json:"deadline"`
	Minutes  int       `json:"minutes"`
}

// Store is the configuration store. See the package comment.
type Store struct {
	opts  Options
	clock Clock
	log   *slog.Logger

	commitMu sync.Mutex
	running  atomic.Pointer[config.Config]

	// committed and failed count the commits applied and those refused or failed (validation, apply, save),
	// for the metrics.
	committed, failed atomic.Uint64

	notices []string // what Open found; not changed after Open

	mu        sync.Mutex
	candidate *config.Config
	archive   []Commit // oldest first
	lastRev   int      // the highest revision number ever used, set-aside entries included
	pending   *pendingConfirm
	timer     interface{ Stop() bool }
	closed    bool
}

// Open loads the state directory: the saved running configuration (or the default on first start), the archive,
// and a commit-confirm still waiting from before a restart. It never deletes history and never refuses to start
// over a damaged file:
//
//   - temporary files a crash left are removed;
//   - an archive entry that cannot be read is renamed aside (NNNNNNNN.json.unreadable-TIME) and reported;
//   - a config.json that cannot be read (truncated, damaged) is renamed aside the same way, and the store starts
//     from the newest readable archive entry (the default configuration when there is none), recorded as a new
//     revision on top; so does a config.json that is missing while the archive is not;
//   - a config.json that differs from the newest archive entry (edited while torided was stopped) becomes a new
//     revision on top, except that an entry whose commit never reached config.json (a crash in the middle of a
//     commit: config.json still holds the entry before it) is set aside (NNNNNNNN.json.interrupted-TIME);
//   - a config.json that parses but fails validation is started as it is, best effort, as Boot always does: it is
//     the admin's newest intent, where an older archive entry could bring back a deleted user or key;
//   - secrets stored in clear by an older version are sealed in every file at once.
//
// What needs the admin's eye is in Notices. Open does not apply anything: call Boot.
func Open(opts Options) (*Store, error) {
	if opts.Applier == nil {
		panic("store: Options.Applier is nil")
	}
	if opts.ArchiveSize == 0 {
		opts.ArchiveSize = 100
	}
	if opts.ConfirmUnit == 0 {
		opts.ConfirmUnit = time.Minute
	}
	if opts.Validate == nil {
		opts.Validate = config.Validate
	}
	s := &Store{opts: opts, clock: opts.Clock, log: opts.Logger}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(s.archiveDir(), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	atomicfile.RemoveTemps(opts.Dir)
	atomicfile.RemoveTemps(s.archiveDir())

	if err := s.loadArchive(); err != nil {
		return nil, err
	}
	running, err := s.loadRunning()
	if err != nil {
		return nil, err
	}
	s.running.Store(running)
	s.candidate = running.Clone()
	if err := s.loadPending(); err != nil {
		return nil, err
	}
	if ps := s.opts.Validate(running.WithDefaults()); len(ps) > 0 {
		s.notice("the running configuration has %s; it was started as it is, best effort: fix it and commit", ps.Error())
	}
	return s, nil
}

// Notices returns what Open found that needs an admin's attention (a damaged file set aside, where the running
// configuration came from instead, a secret that does not open, problems of the running configuration), one
// sentence each; nil when the state directory was sound.
func (s *Store) Notices() []string { return slices.Clone(s.notices) }

func (s *Store) notice(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.log.Error(msg)
	s.notices = append(s.notices, msg)
}

func (s *Store) path(name string) string { return filepath.Join(s.opts.Dir, name) }
func (s *Store) archiveDir() string      { return s.path("archive") }

// loadArchive reads every archive entry, sets aside the ones that cannot be read, seals the secrets of the ones
// that hold them in clear, and finds the highest revision number ever used (set-aside entries included), so no
// number is used twice.
func (s *Store) loadArchive() error {
	entries, err := os.ReadDir(s.archiveDir())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var revs []int
	for _, e := range entries {
		num, rest, _ := strings.Cut(e.Name(), ".")
		n, err := strconv.Atoi(num)
		if err != nil || rest != "json" && !strings.HasPrefix(rest, "json.") {
			continue
		}
		s.lastRev = max(s.lastRev, n)
		if rest == "json" {
			revs = append(revs, n)
		}
	}
	sort.Ints(revs)
	for _, rev := range revs {
		_, meta, stale, _, err := s.readEntry(rev)
		if err != nil {
			aside, aerr := s.setAside(s.archiveFile(rev), "unreadable")
			if aerr != nil {
				return fmt.Errorf("store: archive revision %d cannot be read (%v) nor set aside: %w", rev, err, aerr)
			}
			s.notice("archive revision %d cannot be read (%v); it is kept as %s", rev, err, aside)
			continue
		}
		s.archive = append(s.archive, meta)
		if stale {
			s.reseal(s.archiveFile(rev), func() error {
				c, _, _, _, err := s.readEntry(rev)
				if err != nil {
					return err
				}
				body, err := config.Marshal(s.seal(c))
				if err != nil {
					return err
				}
				return s.writeEntry(meta, body)
			})
		}
	}
	return nil
}

// loadRunning reads config.json and reconciles it with the archive; see Open.
func (s *Store) loadRunning() (*config.Config, error) {
	data, err := os.ReadFile(s.path("config.json"))
	if errors.Is(err, os.ErrNotExist) {
		if len(s.archive) == 0 {
			c := &config.Config{}
			if s.opts.Default != nil {
				c = s.opts.Default.Clone()
			}
			return c, s.record(c, Commit{Author: "system", Comment: "initial configuration"})
		}
		return s.startFromArchive("config.json is missing")
	}
	var c *config.Config
	var stale bool
	var unopened []string
	if err == nil {
		c, stale, unopened, err = s.decode(data)
	}
	if err != nil {
		aside, aerr := s.setAside(s.path("config.json"), "unreadable")
		if aerr != nil {
			return nil, fmt.Errorf("store: %s cannot be read (%v) nor set aside: %w", s.path("config.json"), err, aerr)
		}
		return s.startFromArchive(fmt.Sprintf("config.json cannot be read (%v); it is kept as %s", err, aside))
	}
	if len(unopened) > 0 {
		s.notice("the secrets at %s do not open (sealed by another appliance, or damaged) and are kept as stored; set them again",
			strings.Join(unopened, ", "))
	}
	if len(s.archive) == 0 {
		return c, s.record(c, Commit{Author: foundAtStart, Comment: "config.json had no commit archive; recorded as found"})
	}
	newest := s.archive[len(s.archive)-1]
	if base, _, err := s.revisionConfig(newest.Revision); err == nil && config.Equal(base, c) {
		if stale {
			s.reseal(s.path("config.json"), func() error { return s.writeRunning(c) })
		}
		return c, nil
	}
	if len(s.archive) > 1 {
		prev := s.archive[len(s.archive)-2]
		if base, _, err := s.revisionConfig(prev.Revision); err == nil && config.Equal(base, c) {
			// A crash between writing the newest entry and renaming config.json: that commit never ran.
			aside, err := s.setAside(s.archiveFile(newest.Revision), "interrupted")
			if err != nil {
				return nil, fmt.Errorf("store: setting aside archive revision %d, which never became running: %w", newest.Revision, err)
			}
			s.log.Warn("an interrupted commit never became the running configuration; its archive entry is set aside",
				"revision", newest.Revision, "kept_as", aside)
			s.archive = s.archive[:len(s.archive)-1]
			if stale {
				s.reseal(s.path("config.json"), func() error { return s.writeRunning(c) })
			}
			return c, nil
		}
	}
	comment := fmt.Sprintf("config.json differs from archive revision %d (edited while torided was stopped?); recorded as found", newest.Revision)
	s.log.Warn(comment)
	return c, s.record(c, Commit{Author: foundAtStart, Comment: comment})
}

// foundAtStart is the author of a revision Open recorded from what it found on disk.
const foundAtStart = "found at start"

// startFromArchive starts from the newest archive entry, because config.json cannot be used (why), and records it
// as a new revision that says so; with no archive entry, from the default configuration.
func (s *Store) startFromArchive(why string) (*config.Config, error) {
	if len(s.archive) == 0 {
		c := &config.Config{}
		if s.opts.Default != nil {
			c = s.opts.Default.Clone()
		}
		msg := why + "; no archive entry can be read either: started from the default configuration"
		s.notice("%s", msg)
		return c, s.record(c, Commit{Author: foundAtStart, Comment: msg})
	}
	newest := s.archive[len(s.archive)-1]
	c, _, err := s.revisionConfig(newest.Revision)
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("%s; started from archive revision %d of %s", why, newest.Revision, newest.Time.Format(time.RFC3339))
	s.notice("%s", msg)
	return c, s.record(c, Commit{Author: foundAtStart, Comment: msg})
}

// record persists what Open found as a new revision. A commit-confirm that waited for the newest entry keeps
// waiting for the new one, so its timeout still returns to the configuration before it.
func (s *Store) record(c *config.Config, meta Commit) error {
	var pc *pendingConfirm
	if data, err := os.ReadFile(s.path("confirm.json")); err == nil && len(s.archive) > 0 {
		var p pendingConfirm
		if json.Unmarshal(data, &p) == nil && p.Revision == s.archive[len(s.archive)-1].Revision {
			pc = &p
		}
	}
	_, err := s.persist(c, meta, pc)
	return err
}

// setAside renames a file that must not be used, but must not be lost either, to NAME.WHY-TIME, and returns the
// new path.
func (s *Store) setAside(path, why string) (string, error) {
	base := fmt.Sprintf("%s.%s-%s", path, why, s.clock.Now().UTC().Format("20060102T150405Z"))
	aside := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, atomicfile.SyncDir(filepath.Dir(path))
}

// reseal rewrites a file whose secrets are stored in clear (or in an older sealed form); a failure leaves the file
// as it was, and is reported.
func (s *Store) reseal(path string, write func() error) {
	if err := write(); err != nil {
		s.notice("%s holds secrets in clear and could not be rewritten sealed: %v", path, err)
		return
	}
	s.log.Info("sealed the secrets an older version stored in clear", "file", path)
}

// decode parses a stored configuration and opens its secrets. stale: some were stored in an outdated form (in
// clear); unopened: the paths of the ones that do not open, kept as stored.
func (s *Store) decode(data []byte) (c *config.Config, stale bool, unopened []string, err error) {
	c, err = config.Unmarshal(data)
	if err != nil || s.opts.Secrets == nil {
		return c, false, nil, err
	}
	c.MapSecrets(func(path []string, v config.Secret) config.Secret {
		value, current, err := s.opts.Secrets.Open(path, string(v))
		stale = stale || !current
		if err != nil {
			unopened = append(unopened, strings.Join(path, " "))
			return v
		}
		return config.Secret(value)
	})
	return c, stale, unopened, nil
}

// seal returns c with its secrets in their at-rest form, as every file the store writes holds them.
func (s *Store) seal(c *config.Config) *config.Config {
	if s.opts.Secrets == nil {
		return c
	}
	c = c.Clone()
	c.MapSecrets(func(path []string, v config.Secret) config.Secret {
		return config.Secret(s.opts.Secrets.Seal(path, string(v)))
	})
	return c
}

func (s *Store) archiveFile(rev int) string {
	return filepath.Join(s.archiveDir(), fmt.Sprintf("%08d.json", rev))
}

// readEntry reads archive entry rev whole: its commit, and its configuration with the secrets opened.
func (s *Store) readEntry(rev int) (*config.Config, Commit, bool, []string, error) {
	data, err := os.ReadFile(s.archiveFile(rev))
	if err != nil {
		return nil, Commit{}, false, nil, err
	}
	var a archived
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, Commit{}, false, nil, err
	}
	if a.Commit.Revision != rev {
		return nil, Commit{}, false, nil, fmt.Errorf("the entry names revision %d", a.Commit.Revision)
	}
	c, stale, unopened, err := s.decode(a.Config)
	if err != nil {
		return nil, Commit{}, false, nil, err
	}
	return c, a.Commit, stale, unopened, nil
}

func (s *Store) writeEntry(meta Commit, body []byte) error {
	entry, err := json.MarshalIndent(archived{Commit: meta, Config: body}, "", "  ")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return atomicfile.Write(s.archiveFile(meta.Revision), entry, 0o600)
}

func (s *Store) writeRunning(c *config.Config) error {
	body, err := config.Marshal(s.seal(c))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return atomicfile.Write(s.path("config.json"), body, 0o600)
}

func (s *Store) revisionConfig(rev int) (*config.Config, Commit, error) {
	c, meta, _, _, err := s.readEntry(rev)
	if err != nil {
		return nil, Commit{}, fmt.Errorf("%w: revision %d: %v", ErrNoSuchRevision, rev, err)
	}
	return c, meta, nil
}

func (s *Store) loadPending() error {
	data, err := os.ReadFile(s.path("confirm.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var pc pendingConfirm
	if err := json.Unmarshal(data, &pc); err != nil || len(s.archive) == 0 || s.archive[len(s.archive)-1].Revision != pc.Revision {
		// Stale: the commit it waits for never became running.
		_ = os.Remove(s.path("confirm.json"))
		return nil
	}
	s.pending = &pc
	return nil
}

// Boot applies the running configuration to a system that has nothing applied yet, at daemon start. A
// commit-confirm that timed out while the daemon was down is reverted first; one still waiting is re-armed.
func (s *Store) Boot(ctx context.Context) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	pc := s.pending
	s.mu.Unlock()
	if pc != nil && !s.clock.Now().Before(pc.Deadline) {
		prev, _, err := s.revisionConfig(pc.Previous)
		if err == nil {
			c, err := s.persist(prev, Commit{Author: "system", Comment: revertComment(pc)}, nil)
			if err != nil {
				return err
			}
			s.log.Warn("commit-confirm expired while stopped; reverted", "revision", pc.Revision, "to", pc.Previous, "new_revision", c.Revision)
			s.running.Store(prev)
			s.mu.Lock()
			s.candidate = prev.Clone()
			s.pending = nil
			s.mu.Unlock()
		}
	}
	var err error
	if b, ok := s.opts.Applier.(Booter); ok {
		err = b.Boot(ctx, s.running.Load().WithDefaults())
	} else {
		err = s.opts.Applier.Apply(ctx, &config.Config{}, s.running.Load().WithDefaults())
	}
	s.mu.Lock()
	if s.pending != nil {
		s.armLocked(s.pending)
	}
	s.mu.Unlock()
	return err
}

// Running returns a copy of the running configuration.
func (s *Store) Running() *config.Config { return s.running.Load().Clone() }

// Candidate returns a copy of the candidate configuration.
func (s *Store) Candidate() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.candidate.Clone()
}

// Edit changes the candidate through fn, which gets a copy: if fn fails, the candidate is unchanged.
func (s *Store) Edit(fn func(c *config.Config) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.candidate.Clone()
	if err := fn(c); err != nil {
		return err
	}
	s.candidate = c
	return nil
}

// Discard throws away the candidate's changes.
func (s *Store) Discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.candidate = s.running.Load().Clone()
}

// Changed reports whether the candidate differs from the running configuration.
func (s *Store) Changed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !config.Equal(s.candidate, s.running.Load())
}

// CommitRequest is what a commit carries besides the candidate.
type CommitRequest struct {
	Author         string
	Comment        string
	ConfirmMinutes int // > 0: revert by itself unless Confirm comes within this many minutes
}

// Commit validates and applies the candidate and makes it the running configuration. Validation problems come
// back as config.Problems, with nothing applied; an apply failure comes back as the Applier's error, with the
// system as it was. A plain commit while a commit-confirm waits also confirms it.
func (s *Store) Commit(ctx context.Context, req CommitRequest) (Commit, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	cand := s.candidate.Clone()
	pc := s.pending
	s.mu.Unlock()
	running := s.running.Load()
	if config.Equal(cand, running) {
		if pc != nil && req.ConfirmMinutes == 0 {
			return Commit{}, s.confirmLocked(req.Author)
		}
		return Commit{}, ErrNoChanges
	}
	var next *pendingConfirm
	if req.ConfirmMinutes > 0 {
		previous := s.newest().Revision
		if pc != nil {
			previous = pc.Previous // confirming-by-timeout returns to the last confirmed state
		}
		next = &pendingConfirm{Previous: previous, Minutes: req.ConfirmMinutes,
			Deadline: s.clock.Now().Add(time.Duration(req.ConfirmMinutes) * s.opts.ConfirmUnit)}
	} else if req.ConfirmMinutes < 0 {
		return Commit{}, ErrConfirmUnsupported
	}
	return s.commitLocked(ctx, running, cand, Commit{Author: req.Author, Comment: req.Comment}, next)
}

func (s *Store) commitLocked(ctx context.Context, running, next *config.Config, meta Commit, pc *pendingConfirm) (Commit, error) {
	return s.commitWith(ctx, running, next, meta, pc, false, nil)
}

// commitWith is commitLocked with two extras for Change: keepPending leaves a waiting commit-confirm waiting (it
// then reverts this commit too), and rebase, if not nil, is applied to a candidate holding other edits.
func (s *Store) commitWith(ctx context.Context, running, next *config.Config, meta Commit, pc *pendingConfirm, keepPending bool, rebase func(*config.Config) error) (_ Commit, err error) {
	defer func() {
		if err != nil {
			s.failed.Add(1)
		} else {
			s.committed.Add(1)
		}
	}()
	eff := next.WithDefaults()
	if ps := s.opts.Validate(eff); len(ps) > 0 {
		return Commit{}, ps
	}
	old := running.WithDefaults()
	if err := s.opts.Applier.Apply(ctx, old, eff); err != nil {
		return Commit{}, &ApplyError{Err: err}
	}
	if keepPending {
		s.mu.Lock()
		if s.pending != nil {
			kept := *s.pending
			pc = &kept
		}
		s.mu.Unlock()
	}
	c, err := s.persist(next, meta, pc)
	if err != nil {
		// Applied but not saved: return the system to what is saved, so a reboot cannot surprise anyone.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if rerr := s.opts.Applier.Apply(rctx, eff, old); rerr != nil {
			return Commit{}, fmt.Errorf("%w (and returning to the saved configuration failed: %v)", err, rerr)
		}
		return Commit{}, err
	}
	s.running.Store(next)
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.pending = nil
	if pc != nil {
		pc.Revision = c.Revision
		s.pending = pc
		s.armLocked(pc)
	}
	// The candidate follows the commit unless it holds other edits; those stay pending on top of the change.
	if config.Equal(s.candidate, running) || config.Equal(s.candidate, next) {
		s.candidate = next.Clone()
	} else if rebase != nil {
		cand := s.candidate.Clone()
		if err := rebase(cand); err != nil {
			s.log.Warn("the candidate's pending edits conflict with a change committed through the API; committing them will undo it", "revision", c.Revision, "err", err)
		} else {
			s.candidate = cand
		}
	}
	s.mu.Unlock()
	return c, nil
}

// CommitCounts returns how many commits (rollbacks and API changes included) were applied, and how many were
// refused or failed, since Open. It is safe for concurrent use.
func (s *Store) CommitCounts() (committed, failed uint64) { return s.committed.Load(), s.failed.Load() }

// Change commits one change, made by fn to a copy of the running configuration, as a transaction of its own:
// an API operation (create an SSL-VPN, enroll an OTP key) never commits an admin's uncommitted edits, and those
// edits stay pending on top of it. fn may be called twice (for the running configuration and the candidate) and
// must do the same both times. A commit-confirm waiting stays waiting, and its timeout reverts this change too.
func (s *Store) Change(ctx context.Context, author, comment string, fn func(c *config.Config) error) (Commit, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	running := s.running.Load()
	next := running.Clone()
	if err := fn(next); err != nil {
		return Commit{}, err
	}
	if config.Equal(next, running) {
		return Commit{}, ErrNoChanges
	}
	return s.commitWith(ctx, running, next, Commit{Author: author, Comment: comment}, nil, true, fn)
}

// persist writes next as a new revision: archive entry, then confirm.json, then config.json (the commit point),
// then trims the archive. It returns the new commit.
func (s *Store) persist(next *config.Config, meta Commit, pc *pendingConfirm) (_ Commit, err error) {
	body, err := config.Marshal(s.seal(next))
	if err != nil {
		return Commit{}, fmt.Errorf("store: %w", err)
	}
	s.mu.Lock()
	meta.Revision = s.lastRev + 1
	s.mu.Unlock()
	meta.Time = s.clock.Now().UTC().Truncate(time.Second)
	if err := s.writeEntry(meta, body); err != nil {
		return Commit{}, err
	}
	defer func() {
		if err != nil {
			// The entry of a commit that did not happen is no history: remove it, or a later start would take it
			// for one that was interrupted.
			_ = atomicfile.Remove(s.archiveFile(meta.Revision))
		}
	}()
	if pc != nil {
		pc.Revision = meta.Revision
		data, _ := json.Marshal(pc)
		if err := atomicfile.Write(s.path("confirm.json"), data, 0o600); err != nil {
			return Commit{}, err
		}
	} else if err := atomicfile.Remove(s.path("confirm.json")); err != nil {
		return Commit{}, err
	}
	if err := atomicfile.Write(s.path("config.json"), body, 0o600); err != nil {
		return Commit{}, err
	}
	s.mu.Lock()
	s.lastRev = meta.Revision
	s.archive = append(s.archive, meta)
	for len(s.archive) > s.opts.ArchiveSize {
		_ = os.Remove(s.archiveFile(s.archive[0].Revision))
		s.archive = s.archive[1:]
	}
	s.mu.Unlock()
	return meta, nil
}

func (s *Store) newest() Commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newestLocked()
}

func (s *Store) newestLocked() Commit {
	if len(s.archive) == 0 {
		return Commit{}
	}
	return s.archive[len(s.archive)-1]
}

// Confirm confirms a waiting commit-confirm, so it stays.
func (s *Store) Confirm(author string) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.confirmLocked(author)
}

func (s *Store) confirmLocked(author string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return ErrNoPendingConfirm
	}
	if err := atomicfile.Remove(s.path("confirm.json")); err != nil {
		return err
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.log.Info("commit confirmed", "revision", s.pending.Revision, "by", author)
	s.pending = nil
	return nil
}

// Pending returns the deadline of a commit-confirm waiting for confirmation.
func (s *Store) Pending() (revision int, deadline time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return 0, time.Time{}, false
	}
	return s.pending.Revision, s.pending.Deadline, true
}

func (s *Store) armLocked(pc *pendingConfirm) {
	if s.closed {
		return
	}
	d := pc.Deadline.Sub(s.clock.Now())
	rev := pc.Revision
	s.timer = s.clock.AfterFunc(max(d, 0), func() { s.revert(rev) })
}

func revertComment(pc *pendingConfirm) string {
	return fmt.Sprintf("commit-confirm: revision %d was not confirmed within %d minute(s); reverted to revision %d",
		pc.Revision, pc.Minutes, pc.Previous)
}

// revert returns to the configuration before an unconfirmed commit-confirm.
func (s *Store) revert(rev int) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	pc := s.pending
	closed := s.closed
	s.mu.Unlock()
	if closed || pc == nil || pc.Revision != rev {
		return // confirmed, superseded or shutting down meanwhile
	}
	prev, _, err := s.revisionConfig(pc.Previous)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var c Commit
		c, err = s.commitLocked(ctx, s.running.Load(), prev, Commit{Author: "system", Comment: revertComment(pc)}, nil)
		if err == nil {
			s.log.Warn("commit-confirm timed out; reverted", "revision", pc.Revision, "to", pc.Previous, "new_revision", c.Revision)
			return
		}
	}
	s.log.Error("commit-confirm timed out but the revert failed; retrying in a minute", "revision", pc.Revision, "err", err)
	s.mu.Lock()
	if !s.closed && s.pending == pc {
		s.timer = s.clock.AfterFunc(time.Minute, func() { s.revert(rev) })
	}
	s.mu.Unlock()
}

// Commits returns the archive, newest first: index 0 is the running configuration's commit.
func (s *Store) Commits() []Commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.archive)
	slices.Reverse(out)
	return out
}

// Revision returns the configuration of archive entry n (0 = the running one, 1 = the one before…).
func (s *Store) Revision(n int) (*config.Config, Commit, error) {
	s.mu.Lock()
	if n < 0 || n >= len(s.archive) {
		size := len(s.archive)
		s.mu.Unlock()
		return nil, Commit{}, fmt.Errorf("%w: %d (the archive holds 0 to %d)", ErrNoSuchRevision, n, size-1)
	}
	rev := s.archive[len(s.archive)-1-n].Revision
	s.mu.Unlock()
	return s.revisionConfig(rev)
}

// Rollback commits archive entry n (0 = running, 1 = the previous commit…) as a new commit. It refuses while the
// candidate holds uncommitted changes, so none are lost silently.
func (s *Store) Rollback(ctx context.Context, n int, author string) (Commit, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	target, meta, err := s.Revision(n)
	if err != nil {
		return Commit{}, err
	}
	running := s.running.Load()
	s.mu.Lock()
	dirty := !config.Equal(s.candidate, running)
	s.mu.Unlock()
	if dirty {
		return Commit{}, ErrUncommitted
	}
	if config.Equal(target, running) {
		return Commit{}, ErrNoChanges
	}
	return s.commitLocked(ctx, running, target, Commit{Author: author,
		Comment: fmt.Sprintf("rollback %d (to revision %d of %s)", n, meta.Revision, meta.Time.Format(time.RFC3339))}, nil)
}

// Close stops the commit-confirm timer, after any commit or revert under way has finished. A waiting
// commit-confirm stays on disk and is honoured at the next Open. Close is idempotent.
func (s *Store) Close() {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}
