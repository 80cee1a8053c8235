// Package charon runs and supervises one strongSwan charon daemon for torided.
//
// The Supervisor writes a strongswan.conf into its own run directory, starts charon in a private mount namespace
// where that directory is /run (so the pid file and the VICI socket are private, and one charon per network
// namespace works), optionally inside a given network namespace, waits until charon answers on VICI, and restarts
// it with exponential back-off whenever it exits. Its state is data (Health); Changes signals every state change
// so the owner can reconnect and reload connections after a restart.
//
//	Start ──► starting ──(VICI answers)──► running ──(charon exits)──► restarting ──(back-off)──► starting …
//	                                                   Close ──► stopped (SIGTERM, then SIGKILL after 10 s)
//
// A Supervisor is safe for concurrent use. It owns one goroutine (the loop) plus the launcher goroutine of the
// current charon; Close waits for both.
package charon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"toride/ike/internal/vici"
)

// ErrCharon is wrapped by this package's errors.
var ErrCharon = errors.New("charon")

// DefaultBinary is where Debian's strongswan-charon installs the daemon.
const DefaultBinary = "/usr/lib/ipsec/charon"

// Options configure a Supervisor. RunDir and Backend are required.
type Options struct {
	// Binary is the charon executable; "" means DefaultBinary.
	Binary string
	// RunDir is a private directory for strongswan.conf, the pid file and the VICI socket. Keep its path short:
	// the socket path must fit in 107 bytes.
	RunDir string
	// NetnsPath is a network namespace file (e.g. /run/netns/lab1) to run charon in; "" is the caller's.
	NetnsPath string
	// Backend selects kernel-netlink or kernel-libipsec.
	Backend Backend
	// RouteBased keeps charon's routes out (see ConfOptions.RouteBased).
	RouteBased bool
	// Retransmit is the IKE retransmission schedule; the zero value means DefaultRetransmit.
	Retransmit Retransmit
	// LogLevel is charon's log level for its captured output (see Log); 0 means 1.
	LogLevel int
	// StartTimeout bounds the wait for a new charon to answer on VICI; 0 means 20 s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart; 0 means 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives start/exit/restart reports; nil discards them.
	Logger *slog.Logger
}

// State is the supervisor's state.
type State string

// The states.
const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateStopped    State = "stopped"
)

// Health is a snapshot of the supervised charon.
type Health struct {
	State      State     `json:"state"`
	Backend    Backend   `json:"backend"`
	PID        int       `json:"pid,omitempty"`
	Version    string    `json:"version,omitempty"`
	Since      time.Time `json:"since"`    // when State was entered
	Starts     int       `json:"starts"`   // charon processes started, this one included
	Restarts   int       `json:"restarts"` // unplanned exits followed by a restart
	LastExit   string    `json:"last_exit,omitempty"`
	LastExitAt time.Time `json:"last_exit_at,omitzero"`
	LastError  string    `json:"last_error,omitempty"` // the last start failure
}

// Supervisor supervises one charon.
type Supervisor struct {
	opts    Options
	socket  string
	log     *tailBuffer
	changes chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once

	mu     sync.Mutex
	health Health
}

// Start validates opts, prepares the run directory and starts supervising charon. It returns at once; watch
// Changes and Health for charon coming up.
func Start(opts Options) (*Supervisor, error) {
	if opts.RunDir == "" {
		return nil, fmt.Errorf("%w: a run directory is required", ErrCharon)
	}
	switch opts.Backend {
	case BackendKernel, BackendLibipsec:
	default:
		return nil, fmt.Errorf("%w: unknown backend %q", ErrCharon, opts.Backend)
	}
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	if opts.LogLevel == 0 {
		opts.LogLevel = 1
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 20 * time.Second
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("%w: %s: %w (install strongswan-charon)", ErrCharon, opts.Binary, err)
	}
	if err := checkPlugins(filepath.Join(filepath.Dir(opts.Binary), "plugins"), opts.Backend); err != nil {
		return nil, err
	}
	runDir, err := filepath.Abs(opts.RunDir)
	if err != nil {
		return nil, fmt.Errorf("%w: run directory: %w", ErrCharon, err)
	}
	opts.RunDir = runDir
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: run directory: %w", ErrCharon, err)
	}
	socket := filepath.Join(runDir, "charon.vici")
	if len(socket) > 107 {
		return nil, fmt.Errorf("%w: VICI socket path %s is longer than a unix socket allows", ErrCharon, socket)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{
		opts:    opts,
		socket:  socket,
		log:     newTailBuffer(256 << 10),
		changes: make(chan struct{}, 1),
		cancel:  cancel,
		done:    make(chan struct{}),
		health:  Health{State: StateStarting, Backend: opts.Backend, Since: time.Now()},
	}
	go s.loop(ctx)
	return s, nil
}

// Socket is the path of charon's VICI socket, valid for the supervisor's whole life.
func (s *Supervisor) Socket() string { return s.socket }

// Health returns the current state.
func (s *Supervisor) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

// Changes receives a value (coalesced) whenever Health changes. It is never closed.
func (s *Supervisor) Changes() <-chan struct{} { return s.changes }

// Log returns the tail of charon's own log output (all charon processes of this supervisor).
func (s *Supervisor) Log() string { return s.log.String() }

// Close stops charon (SIGTERM, so it deletes its SAs and tells the peers; SIGKILL after 10 s) and the
// supervision. It is idempotent.
func (s *Supervisor) Close() error {
	s.once.Do(s.cancel)
	<-s.done
	return nil
}

func (s *Supervisor) update(f func(h *Health)) {
	s.mu.Lock()
	f(&s.health)
	s.mu.Unlock()
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

func (s *Supervisor) loop(ctx context.Context) {
	defer close(s.done)
	defer s.update(func(h *Health) { h.State, h.PID, h.Since = StateStopped, 0, time.Now() })
	backoff := s.opts.MinBackoff
	for ctx.Err() == nil {
		started := time.Now()
		p, err := s.start()
		if err != nil {
			s.opts.Logger.Warn("charon did not start", "err", err)
			s.update(func(h *Health) { h.State, h.LastError, h.Since = StateRestarting, err.Error(), time.Now() })
		} else {
			s.supervise(ctx, p)
			if ctx.Err() != nil {
				return
			}
		}
		if time.Since(started) > time.Minute {
			backoff = s.opts.MinBackoff // it ran well for a while: restart promptly
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.opts.MaxBackoff)
	}
}

// start writes the configuration and launches one charon.
func (s *Supervisor) start() (*process, error) {
	dir := s.opts.RunDir
	// A stale pid file could name a live unrelated process and make charon refuse to start.
	for _, f := range []string{"charon.pid", "charon.vici"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: clean run directory: %w", ErrCharon, err)
		}
	}
	conf := Conf(ConfOptions{
		Backend:    s.opts.Backend,
		Socket:     "/run/charon.vici", // as charon sees RunDir
		Retransmit: s.opts.Retransmit,
		LogLevel:   s.opts.LogLevel,
		RouteBased: s.opts.RouteBased,
	})
	if err := os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("%w: write strongswan.conf: %w", ErrCharon, err)
	}
	s.update(func(h *Health) { h.State, h.Since = StateStarting, time.Now() })
	p, err := launch(launchSpec{
		binary:    s.opts.Binary,
		runDir:    dir,
		netnsPath: s.opts.NetnsPath,
		env:       []string{"STRONGSWAN_CONF=/run/strongswan.conf", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		output:    s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", ErrCharon, s.opts.Binary, err)
	}
	s.update(func(h *Health) { h.PID, h.Starts = p.pid, h.Starts+1 })
	s.opts.Logger.Info("charon started", "pid", p.pid, "backend", s.opts.Backend)
	return p, nil
}

// supervise waits for p to answer on VICI, then for it to exit or ctx to end; it always returns with p gone.
func (s *Supervisor) supervise(ctx context.Context, p *process) {
	readyCtx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	version, err := waitReady(readyCtx, s.socket, p.done)
	cancel()
	switch {
	case err == nil:
		s.update(func(h *Health) { h.State, h.Version, h.Since, h.LastError = StateRunning, version, time.Now(), "" })
	case ctx.Err() != nil:
	default:
		// Started but never answered: a wedged charon is as good as a dead one.
		s.opts.Logger.Warn("charon does not answer on VICI; killing it", "pid", p.pid, "err", err)
		s.update(func(h *Health) { h.LastError = "no answer on VICI: " + err.Error() })
		killGroup(p.pid)
	}
	select {
	case <-p.done:
		exit := "exited"
		if p.err != nil {
			exit = p.err.Error()
		}
		s.opts.Logger.Warn("charon exited; restarting", "pid", p.pid, "exit", exit)
		s.update(func(h *Health) {
			h.State, h.PID, h.Since = StateRestarting, 0, time.Now()
			h.LastExit, h.LastExitAt = exit, time.Now()
			h.Restarts++
		})
	case <-ctx.Done():
		signalProcess(p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			killGroup(p.pid)
			<-p.done
		}
		s.opts.Logger.Info("charon stopped", "pid", p.pid)
	}
}

// pluginPackages names the Debian package of each plugin charon cannot do without here. Note that the vici plugin
// ships with strongswan-swanctl, although the swanctl program itself is never used.
var pluginPackages = map[string]string{
	"vici":            "strongswan-swanctl",
	"socket-default":  "strongswan-libcharon",
	"kernel-netlink":  "libstrongswan",
	"kernel-libipsec": "libcharon-extra-plugins",
	"openssl":         "libstrongswan-standard-plugins",
}

// checkPlugins fails early, naming the package to install, when a plugin the configuration needs is missing
// (charon would start without it and never answer on VICI). Without a plugin directory it checks nothing.
func checkPlugins(dir string, backend Backend) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	need := []string{"vici", "socket-default", "kernel-netlink", "openssl"}
	if backend == BackendLibipsec {
		need = append(need, "kernel-libipsec")
	}
	var missing []string
	for _, p := range need {
		if _, err := os.Stat(filepath.Join(dir, "libstrongswan-"+p+".so")); err != nil {
			missing = append(missing, p+" (package "+pluginPackages[p]+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: charon plugins missing in %s: %s", ErrCharon, dir, strings.Join(missing, ", "))
	}
	return nil
}

// waitReady polls VICI until charon answers "version", p ends, or ctx ends. The socket appears before charon
// is fully up, so an answer, not the file, is the signal.
func waitReady(ctx context.Context, socket string, done <-chan struct{}) (string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := vici.Dial(callCtx, socket)
		if err == nil {
			var v vici.Version
			v, err = c.Version(callCtx)
			c.Close()
			if err == nil {
				cancel()
				return v.Daemon + " " + v.Version, nil
			}
		}
		cancel()
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-done:
			return "", fmt.Errorf("%w: charon exited before answering", ErrCharon)
		case <-tick.C:
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
