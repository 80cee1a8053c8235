// Package ike is torided's site-to-site IPsec engine: it keeps the cloud's dual tunnels up through strongSwan's
// charon, probes them, and steers traffic to a healthy one.
//
//	Service.Set(Config) ──► engine goroutine ──VICI──► charon (supervised by ike/charon, own run dir and socket)
//	                          │  ▲    ▲                    │ SAs into kernel XFRM or libipsec (ipsec0)
//	                          │  │    │                    │ route-based: xfrm interfaces + routes (routed.go)
//	   probers (one per ──────┘  │    └── events (ike/child updown, rekey) + periodic list-sas resync
//	   tunnel, ICMP through      │
//	   the tunnel's inside /32)  └── supervisor changes (charon restarted → reload everything)
//
// One engine goroutine owns all state; Set talks to it through a channel and waits for its answer, and Status
// reads a snapshot it publishes after every step, so neither ever blocks on charon for long and both are safe for
// concurrent use. The engine is declarative: it diffs the desired configuration against what the running charon
// has loaded (by a hash of the rendered connection and secret), reloads only what changed, and re-initiates what
// is down. Steering between tunnels is described in failover.go; how the engine's work is split, in engine.go.
//
// Subpackages: charon (process supervision), awsconf (the cloud's configuration files); internal/vici (typed
// VICI client), internal/icmpprobe (keepalive prober).
package ike

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"toride/dataplane/nft"
	"toride/dataplane/probe"
	"toride/dataplane/tablegate"
	"toride/dataplane/xfrm"
	"toride/ike/bgp"
	"toride/ike/charon"
)

// ErrNotReady is returned by Set when charon did not come up in time; the configuration is kept and applied as
// soon as charon answers.
var ErrNotReady = errors.New("ike: charon is not ready")

// ErrClosed is returned by a Service after Close.
var ErrClosed = errors.New("ike: service closed")

// Firewall is where the engine states the packets it needs admitted (IKE and ESP from each configured peer).
// *nft.Manager implements it; the owner name used is "ike".
type Firewall interface {
	Set(ctx context.Context, owner string, rules []nft.Rule) error
	// SetClamps sets the MSS clamps of traffic leaving by the route-based tunnels' interfaces (owner ClampOwner).
	SetClamps(ctx context.Context, owner string, clamps []nft.Clamp) error
}

// Opts configure a Service. RunDir is required.
type Opts struct {
	// RunDir is charon's private run directory (strongswan.conf, VICI socket, pid file). Keep the path short.
	RunDir string
	// NetnsPath runs charon, the probes and the address setup in that network namespace; "" is the caller's.
	NetnsPath string
	// CharonBinary overrides charon.DefaultBinary.
	CharonBinary string
	// Backend forces a backend; "" lets the kernel probe decide (kernel-netlink with ESP, else libipsec).
	Backend charon.Backend
	// Retransmit is charon's IKE retransmission schedule; the zero value is charon.DefaultRetransmit.
	Retransmit charon.Retransmit
	// Firewall, if set, receives the rules admitting IKE and ESP from the configured peers.
	Firewall Firewall
	// ResyncInterval is how often SAs are listed even without events; 0 means 2 s.
	ResyncInterval time.Duration
	// Logger receives engine events (failovers, restarts, reloads); nil discards them.
	Logger *slog.Logger
	// CharonLogLevel is charon's own log level (captured, see CharonLog); 0 means 1.
	CharonLogLevel int
}

// Service is the IPsec engine. Create it with New; its zero value is not usable.
type Service struct {
	opts   Opts
	sup    *charon.Supervisor
	gate   tableGate // kernel-libipsec: cleared once charon, whose routes it holds back, is gone
	reqs   chan setRequest
	probes chan probeEvent
	kernel chan xfrm.Event // the kernel's XFRM monitor (route-based mode)
	ready  chan struct{}   // receives (coalesced) when the engine (re)connects to charon
	status atomic.Pointer[Status]
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

type setRequest struct {
	ctx   context.Context
	cfg   Config
	reply chan error
}

// New probes the kernel, starts charon under supervision and the engine. It returns without waiting for charon;
// Set waits for it.
func New(ctx context.Context, opts Opts) (*Service, error) {
	if opts.RunDir == "" {
		return nil, errors.New("ike: Opts.RunDir is required")
	}
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	caps, err := probe.Detect(ctx)
	if err != nil && opts.Backend == "" {
		return nil, fmt.Errorf("ike: kernel probe: %w", err)
	}
	backend := opts.Backend
	if backend == "" {
		backend = charon.BackendLibipsec
		if caps.ESP {
			backend = charon.BackendKernel
		}
	}
	mode := ModePolicyBased
	var links tunnelLinks
	var gate tableGate
	var speaker bgpSpeaker
	var learned *learnedRoutes
	newSpeaker := func() error {
		learned = newLearnedRoutes()
		sp, err := bgp.New(bgp.Opts{Sink: learned, NetnsPath: opts.NetnsPath, Logger: opts.Logger.With("component", "bgp")})
		if err != nil {
			return fmt.Errorf("ike: %w", err)
		}
		speaker = sp
		return nil
	}
	switch {
	case backend == charon.BackendKernel && caps.XFRMInterfaces:
		t, err := xfrm.Open(opts.NetnsPath)
		if err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
		if err := newSpeaker(); err != nil {
			t.Close()
			return nil, err
		}
		mode, links = ModeRouteBased, t
	case backend == charon.BackendLibipsec:
		// kernel-libipsec routes every CHILD_SA into its TUN device: the gate lets through only what the
		// engine routes into the tunnels, which is what lets BGP's CHILD_SAs of 0.0.0.0/0 run here.
		g, err := tablegate.Open(opts.NetnsPath)
		if err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
		if err := newSpeaker(); err != nil {
			g.Close()
			return nil, err
		}
		gate = g
	}
	// closeRouted releases what the mode made when New fails after making it.
	closeRouted := func() {
		if links != nil {
			links.Close()
		}
		if gate != nil {
			gate.Close()
		}
		if speaker != nil {
			speaker.Close()
		}
	}
	sup, err := charon.Start(charon.Options{
		Binary:     opts.CharonBinary,
		RunDir:     opts.RunDir,
		NetnsPath:  opts.NetnsPath,
		Backend:    backend,
		RouteBased: mode == ModeRouteBased,
		Retransmit: opts.Retransmit,
		LogLevel:   opts.CharonLogLevel,
		Logger:     opts.Logger.With("component", "charon"),
	})
	if err != nil {
		closeRouted()
		return nil, fmt.Errorf("ike: %w", err)
	}
	addrs, err := openLoopbackAddrs(opts.NetnsPath)
	if err != nil {
		sup.Close()
		closeRouted()
		return nil, fmt.Errorf("ike: %w", err)
	}
	s, e := newService(opts, engineDeps{
		backend:     backend,
		mode:        mode,
		caps:        caps,
		charon:      sup,
		dial:        dialVICI,
		addrs:       addrs,
		links:       links,
		gate:        gate,
		bgp:         speaker,
		learned:     learned,
		firewall:    opts.Firewall,
		startProber: startICMPProber,
		netnsPath:   opts.NetnsPath,
		log:         opts.Logger,
	})
	s.sup, s.gate = sup, gate
	ectx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if links != nil {
		go s.watchKernel(ectx, links)
	}
	go e.run(ectx)
	return s, nil
}

// watchKernel passes the kernel's XFRM monitor events to the engine until ctx ends, re-opening the monitor when
// it fails (after an overrun the engine's periodic resync has caught up anyway).
func (s *Service) watchKernel(ctx context.Context, links tunnelLinks) {
	for ctx.Err() == nil {
		err := links.Watch(ctx, func(ev xfrm.Event) {
			select {
			case s.kernel <- ev:
			default: // the engine is busy; the next resync sees what this event would have shown
			}
		})
		if err != nil {
			s.opts.Logger.Warn("XFRM monitor", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// newService makes a Service and its engine, which has published its first Status but is not running yet.
func newService(opts Opts, deps engineDeps) (*Service, *engine) {
	s := &Service{
		opts:   opts,
		reqs:   make(chan setRequest),
		probes: make(chan probeEvent, 256),
		kernel: make(chan xfrm.Event, 64),
		ready:  make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	e := newEngine(s, deps)
	e.publish()
	return s, e
}

// Set makes cfg the desired state and applies it: it validates cfg (returning every problem as a
// *ValidationError), loads what changed into charon, unloads what was removed (terminating its SAs), and starts
// initiating what should be up. It does not wait for tunnels to come up; watch Status for that. Calling Set
// twice with the same configuration changes nothing the second time.
//
// If charon is not running yet, Set waits for it until ctx ends and then returns ErrNotReady; the configuration
// is still applied once charon is up.
func (s *Service) Set(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.Normalize()
	for {
		reply := make(chan error, 1)
		select {
		case s.reqs <- setRequest{ctx: ctx, cfg: cfg, reply: reply}:
		case <-s.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		}
		var err error
		select {
		case err = <-reply:
		case <-s.done:
			return ErrClosed
		}
		if !errors.Is(err, errNotConnected) {
			return err
		}
		select {
		case <-s.ready:
		case <-time.After(200 * time.Millisecond):
		case <-s.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		}
	}
}

// Status returns the latest snapshot, the caller's own to change. It never blocks on charon.
func (s *Service) Status() Status { return s.status.Load().clone() }

// CharonLog returns the tail of charon's own log, for diagnostics.
func (s *Service) CharonLog() string { return s.sup.Log() }

// CharonPID returns the process id of the running charon, or 0.
func (s *Service) CharonPID() int { return s.sup.Health().PID }

// Close stops the engine and the probes, removes the inside addresses and firewall rules it added, and stops
// charon (which deletes its own SAs and tells the peers). It never flushes XFRM state it did not create. Close is
// idempotent.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.sup.Close()
		if s.gate != nil {
			if err := s.gate.Set(nil); err != nil {
				s.opts.Logger.Warn("removing the routing rules failed", "err", err)
			}
			s.gate.Close()
		}
	})
	return nil
}
