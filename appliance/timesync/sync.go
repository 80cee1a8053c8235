package timesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"time"
)

// Server is what the last exchange with one server gave.
type Server struct {
	Address   string    `json:"address"`
	Reachable bool      `json:"reachable"`
	Stratum   int       `json:"stratum,omitempty"`
	OffsetMs  float64   `json:"offset_ms"`
	DelayMs   float64   `json:"delay_ms"`
	Error     string    `json:"error,omitempty"`
	Last      time.Time `json:"last"`
}

// Status is the clock's state.
type Status struct {
	Synchronized  bool      `json:"synchronized"`  // a server answered in the last poll
	OffsetMs      float64   `json:"offset_ms"`     // of the best server (lowest delay)
	ManagesClock  bool      `json:"manages_clock"` // whether torided corrects the clock
	LastCorrected time.Time `json:"last_corrected,omitzero"`
	Servers       []Server  `json:"servers"`
}

// Clock is the system clock as the syncer corrects it.
type Clock interface {
	Now() time.Time
	Step(d time.Duration) error // jump by d
	Slew(d time.Duration) error // drift by d over time
}

// Options configure a Syncer.
type Options struct {
	Clock      Clock         // nil: measure only, never correct
	Poll       time.Duration // between polls once synchronized (0: 1024 s)
	RetryPoll  time.Duration // between polls while no server answers (0: 64 s)
	Timeout    time.Duration // per exchange (0: 2 s)
	StepAbove  time.Duration // offsets larger than this are stepped, smaller slewed (0: 128 ms)
	Port       int           // server port (0: 123)
	Logger     *slog.Logger
	OnStatus   func(Status) // called after every poll
	Dialer     func(ctx context.Context, network, addr string) (net.Conn, error)
	systemTime func() time.Time
}

// Syncer polls the configured servers until Close. It is safe for concurrent use.
type Syncer struct {
	opts Options

	mu      sync.Mutex
	servers []string
	status  Status
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// New starts a Syncer with no servers; SetServers gives it work.
func New(opts Options) *Syncer {
	if opts.Poll == 0 {
		opts.Poll = 1024 * time.Second
	}
	if opts.RetryPoll == 0 {
		opts.RetryPoll = 64 * time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.StepAbove == 0 {
		opts.StepAbove = 128 * time.Millisecond
	}
	if opts.Port == 0 {
		opts.Port = 123
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dialer == nil {
		opts.Dialer = (&net.Dialer{}).DialContext
	}
	opts.systemTime = time.Now
	if opts.Clock != nil {
		opts.systemTime = opts.Clock.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Syncer{opts: opts, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	s.status.ManagesClock = opts.Clock != nil
	go s.loop(ctx)
	return s
}

// SetServers replaces the server list and polls at once if it changed.
func (s *Syncer) SetServers(servers []string) {
	s.mu.Lock()
	changed := !slices.Equal(s.servers, servers)
	s.servers = slices.Clone(servers)
	s.mu.Unlock()
	if changed {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Status returns the state after the last poll.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Servers = slices.Clone(st.Servers)
	return st
}

// Close stops polling. It is idempotent.
func (s *Syncer) Close() {
	s.cancel()
	<-s.done
}

func (s *Syncer) loop(ctx context.Context) {
	defer close(s.done)
	wait := time.Duration(0)
	for {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.kick:
			timer.Stop()
		case <-timer.C:
		}
		select {
		case <-s.kick: // this poll already sees the newest list
		default:
		}
		s.mu.Lock()
		servers := slices.Clone(s.servers)
		s.mu.Unlock()
		if len(servers) == 0 {
			wait = time.Hour
			s.publish(Status{ManagesClock: s.opts.Clock != nil})
			continue
		}
		st := s.poll(ctx, servers)
		if st.Synchronized {
			wait = s.opts.Poll
		} else {
			wait = s.opts.RetryPoll
		}
	}
}

// poll queries every server, picks the answer with the lowest delay, and corrects the clock by it if it may.
func (s *Syncer) poll(ctx context.Context, servers []string) Status {
	st := Status{ManagesClock: s.opts.Clock != nil}
	best := -1
	var bestOffset time.Duration
	for _, addr := range servers {
		srv := Server{Address: addr, Last: time.Now().UTC()}
		offset, delay, stratum, err := s.exchange(ctx, addr)
		if err != nil {
			srv.Error = err.Error()
		} else {
			srv.Reachable, srv.Stratum = true, stratum
			srv.OffsetMs, srv.DelayMs = ms(offset), ms(delay)
			if best < 0 || srv.DelayMs < st.Servers[best].DelayMs {
				best, bestOffset = len(st.Servers), offset
			}
		}
		st.Servers = append(st.Servers, srv)
	}
	if best >= 0 {
		st.Synchronized, st.OffsetMs = true, ms(bestOffset)
		if s.opts.Clock != nil && bestOffset != 0 {
			var err error
			if bestOffset.Abs() > s.opts.StepAbove {
				err = s.opts.Clock.Step(bestOffset)
				s.opts.Logger.Warn("stepped the clock", "by", bestOffset, "server", st.Servers[best].Address)
			} else {
				err = s.opts.Clock.Slew(bestOffset)
			}
			if err != nil {
				s.opts.Logger.Error("correcting the clock failed", "err", err)
			} else {
				st.LastCorrected = time.Now().UTC()
			}
		}
	}
	s.publish(st)
	return st
}

func (s *Syncer) publish(st Status) {
	s.mu.Lock()
	if st.LastCorrected.IsZero() {
		st.LastCorrected = s.status.LastCorrected
	}
	s.status = st
	s.mu.Unlock()
	if s.opts.OnStatus != nil {
		s.opts.OnStatus(st)
	}
}

// exchange runs one SNTP request/reply with a server.
func (s *Syncer) exchange(ctx context.Context, addr string) (offset, delay time.Duration, stratum int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	conn, err := s.opts.Dialer(ctx, "udp", net.JoinHostPort(addr, fmt.Sprint(s.opts.Port)))
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	t1 := s.opts.systemTime()
	req, stamp := Request(t1)
	if _, err := conn.Write(req[:]); err != nil {
		return 0, 0, 0, err
	}
	buf := make([]byte, 128)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, 0, 0, fmt.Errorf("no answer within %s", s.opts.Timeout)
			}
			return 0, 0, 0, err
		}
		t4 := s.opts.systemTime()
		r, err := Parse(buf[:n], stamp, t4)
		if errors.Is(err, ErrWrongRequest) {
			continue // a late answer to an earlier request: keep waiting for ours
		}
		if err != nil {
			return 0, 0, 0, err
		}
		offset, delay = Measure(t1, r, t4)
		return offset, delay, r.Stratum, nil
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
