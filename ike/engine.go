package ike

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"toride/dataplane/probe"
	"toride/ike/bgp"
	"toride/ike/charon"
	"toride/ike/internal/icmpprobe"
	"toride/ike/internal/vici"
)

// The engine is Service's goroutine. Its jobs live in their own files:
//
//	apply.go      the desired configuration → charon (load, unload, firewall, inside addresses) and bring-up
//	observe.go    what charon has: events and list-sas → each tunnel's SAs and the install order of net CHILD_SAs
//	keepalive.go  the probers and what they show → each tunnel's health
//	steer.go      which tunnel carries the traffic, and moving it (the policy itself is failover.go)
//	routed.go     the same in route-based mode: xfrm interfaces, MSS clamps and the routes into them
//	status.go     the Status snapshot
//
// This file holds the state, the loop, and the session with charon.

var errNotConnected = errors.New("ike: not connected to charon")

// Engine timing. Initiations are retried at most every initiateRetry; a missing IKE_SA is initiated after
// absentGrace (charon may be re-creating it itself, e.g. DPD restart); a promotion not visible after
// promoteRetry is issued again.
const (
	initiateRetry = 5 * time.Second
	absentGrace   = time.Second
	promoteRetry  = 5 * time.Second
	callTimeout   = 10 * time.Second
)

// charonSession is the engine's VICI session with one running charon: the calls the engine makes and the stream
// of its events. *vici.Client implements it.
type charonSession interface {
	// Subscribe delivers ike-updown, child-updown and child-rekey; the channel is closed when the session ends.
	Subscribe(ctx context.Context) (<-chan vici.Event, error)
	ListSAs(ctx context.Context) ([]vici.IKESA, error)
	ListConns(ctx context.Context) ([]string, error)
	GetShared(ctx context.Context) ([]string, error)
	LoadConn(ctx context.Context, name string, conn vici.Conn) error
	UnloadConn(ctx context.Context, name string) error
	LoadShared(ctx context.Context, s vici.Shared) error
	UnloadShared(ctx context.Context, id string) error
	Initiate(ctx context.Context, ike, child string) error
	TerminateIKE(ctx context.Context, ikeID uint64, force bool) error
	TerminateChild(ctx context.Context, childID uint64) error
	Close() error
}

// charonProcess is the supervised charon as the engine sees it. *charon.Supervisor implements it.
type charonProcess interface {
	Health() charon.Health
	Socket() string
	Changes() <-chan struct{}
}

// prober is one tunnel's running keepalive prober. *icmpprobe.Prober implements it.
type prober interface {
	SetEnabled(on bool)
	Close() error
}

// engineDeps are the engine's ties to the world outside its goroutine: New gives it the real charon, netlink and
// ICMP sockets; the unit tests give it fakes.
type engineDeps struct {
	backend     charon.Backend
	mode        Mode
	caps        probe.Capabilities
	charon      charonProcess
	dial        func(ctx context.Context, socket string) (charonSession, error)
	addrs       insideAddrs
	links       tunnelLinks    // route-based mode only
	gate        tableGate      // policy-based mode on kernel-libipsec only
	bgp         bgpSpeaker     // route-based mode, and policy-based mode on kernel-libipsec
	learned     *learnedRoutes // the speaker's sink
	firewall    Firewall       // nil: no firewall rules
	startProber func(cfg icmpprobe.Config, report func(icmpprobe.Result)) (prober, error)
	netnsPath   string // where the probers open their sockets
	log         *slog.Logger
	now         func() time.Time
}

// dialVICI is engineDeps.dial for a real charon.
func dialVICI(ctx context.Context, socket string) (charonSession, error) {
	c, err := vici.Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// startICMPProber is engineDeps.startProber for real ICMP probes.
func startICMPProber(cfg icmpprobe.Config, report func(icmpprobe.Result)) (prober, error) {
	p, err := icmpprobe.Start(cfg, report)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// engine is the state owned by Service's goroutine. Nothing here is touched by any other goroutine.
type engine struct {
	engineDeps
	s *Service // the channels the engine serves and the status it publishes

	client charonSession
	events <-chan vici.Event
	starts int // supervisor's Starts when we connected

	haveCfg    bool
	plans      []*connPlan
	loaded     map[string][32]byte // tunnel name → hash of what the running charon has loaded
	fwHash     [32]byte
	fwSet      bool
	clampsHash [32]byte
	clampsSet  bool
	staleCut   time.Time // when the running charon started: SAs older than that are a dead charon's

	bgpApplied  bgp.Config // what the speaker was last given
	bgpSet      bool
	bgpErr      string
	bgpRejected []string       // learned prefixes not routed, and why
	gateApplied []netip.Prefix // what the gate was last given
	gateSet     bool
	bgpStatus   bgp.Status
	bgpRoutes   []bgp.LearnedRoute
	applied     bool
	lastErr     string
	evaluated   time.Time // the last evaluate

	tunnels  map[string]*tunnelState
	conns    map[string]*connState
	gen      uint64 // prober generations
	lineages lineages
}

// tunnelState is everything the engine knows about one tunnel.
type tunnelState struct {
	plan *tunnelPlan
	conn *connPlan

	tunnelSAs   // from the last resync
	probeRecord // from the prober

	prober    prober
	proberKey string
	proberGen uint64
	probeSA   uint64 // unique id of the probe CHILD_SA the loss count refers to

	healthy      bool
	healthySince time.Time
	lastChange   time.Time
	absentSince  time.Time
	seenIKE      bool // an IKE_SA was seen since the last (re)connect or forced restart
	lastInit     map[string]time.Time
	lastRestart  time.Time
	promotedAt   time.Time
	promotedSeq  uint64 // lineages.seq when the last promotion was issued: a newer lineage here means it is done
	terminating  map[uint64]bool
	failovers    uint64
	restarts     uint64
	kernel       kernelCounters // route-based mode: from the kernel's SAs
	kernelEvents uint64         // hard expiries and acquires the kernel announced for the tunnel
	staleGone    bool           // the SAs a dead charon left on the tunnel's interface were removed
}

type connState struct {
	plan      *connPlan
	steer     steering
	active    int
	failovers uint64
	failbacks uint64
}

func newEngine(s *Service, deps engineDeps) *engine {
	if deps.now == nil {
		deps.now = time.Now
	}
	if deps.mode == "" {
		deps.mode = ModePolicyBased
	}
	return &engine{
		engineDeps: deps,
		s:          s,
		loaded:     map[string][32]byte{},
		tunnels:    map[string]*tunnelState{},
		conns:      map[string]*connState{},
		lineages:   newLineages(),
	}
}

func (e *engine) run(ctx context.Context) {
	defer close(e.s.done)
	defer e.shutdown()
	resync := time.NewTicker(e.s.opts.ResyncInterval)
	defer resync.Stop()
	var learned <-chan struct{}
	if e.learned != nil {
		learned = e.learned.poke
	}
	e.connect(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-e.s.reqs:
			req.reply <- e.set(req.ctx, req.cfg)
		case <-e.charon.Changes():
			e.connect(ctx)
		case ev, ok := <-e.events:
			e.received(ctx, ev, ok)
		case ev := <-e.s.probes:
			e.probed(ctx, ev)
		case ev := <-e.s.kernel:
			e.kernelEvent(ctx, ev)
		case <-learned:
			e.evaluate(ctx)
		case <-resync.C:
			e.tick(ctx)
		}
		e.publish()
	}
}

// tick is the periodic step: reconnect, retry a failed apply, or just resync.
func (e *engine) tick(ctx context.Context) {
	switch {
	case e.client == nil:
		e.connect(ctx)
	case e.haveCfg && !e.applied:
		// The last apply failed part-way (or was cut short by its caller's context): retry it.
		if err := e.apply(ctx); err != nil {
			e.log.Warn("applying the configuration failed; will retry", "err", err)
		}
		e.resync(ctx)
	default:
		e.resync(ctx)
	}
}

// connect attaches to a running charon we are not attached to yet, and loads everything into it.
func (e *engine) connect(ctx context.Context) {
	h := e.charon.Health()
	if h.State != charon.StateRunning {
		if e.client != nil {
			e.disconnect()
		}
		return
	}
	if e.client != nil && h.Starts == e.starts {
		return
	}
	e.disconnect()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c, err := e.dial(cctx, e.charon.Socket())
	if err != nil {
		e.setErr(err)
		return
	}
	evs, err := c.Subscribe(cctx)
	if err != nil {
		c.Close()
		e.setErr(err)
		return
	}
	e.client, e.events, e.starts = c, evs, h.Starts
	e.loaded = map[string][32]byte{} // a new charon has nothing loaded
	e.lineages = newLineages()
	for _, st := range e.tunnels {
		st.tunnelSAs = tunnelSAs{}
		st.staleGone = false
		st.terminating = map[uint64]bool{}
		st.lastInit = map[string]time.Time{}
		st.absentSince, st.promotedAt, st.seenIKE = time.Time{}, time.Time{}, false
	}
	e.log.Info("connected to charon", "pid", h.PID, "starts", h.Starts)
	if e.haveCfg {
		if err := e.apply(ctx); err != nil {
			e.log.Warn("reloading charon failed", "err", err)
		}
	}
	e.staleCut = h.Since
	e.unloadStrays(cctx)
	select {
	case e.s.ready <- struct{}{}:
	default:
	}
	e.resync(ctx)
}

func (e *engine) disconnect() {
	if e.client == nil {
		return
	}
	e.client.Close()
	e.client, e.events = nil, nil
	e.applied = false // the next charon must be loaded again
	// Without charon there are no SAs: show every tunnel down until the new charon has them again.
	now := e.now()
	for _, st := range e.tunnels {
		if st.prober != nil {
			st.prober.SetEnabled(false)
		}
		st.tunnelSAs = tunnelSAs{}
		if st.healthy {
			st.healthy, st.lastChange = false, now
		}
	}
	for _, cs := range e.conns {
		cs.active = -1
	}
}

func (e *engine) setErr(err error) {
	if err == nil {
		e.lastErr = ""
		return
	}
	e.lastErr = err.Error()
}

// evaluate brings tunnels up, judges their health and steers traffic.
func (e *engine) evaluate(ctx context.Context) {
	if e.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	now := e.now()
	e.evaluated = now
	for _, st := range e.tunnels {
		e.bringUp(ctx, now, st)
		e.judge(ctx, now, st)
	}
	if e.mode == ModeRouteBased {
		e.removeStaleSAs()
		e.applyBGP(ctx)
		e.steerRoutes(now)
		return
	}
	e.applyBGP(ctx)
	e.readBGP() // steering follows the sessions' state
	for _, cs := range e.conns {
		e.steer(ctx, now, cs)
	}
	e.applyGate()
}

// shutdown stops probers, removes our addresses and firewall rules. charon is stopped by Service.Close.
func (e *engine) shutdown() {
	for _, st := range e.tunnels {
		if st.prober != nil {
			st.prober.Close()
		}
	}
	e.disconnect()
	e.addrs.sync(nil)
	e.addrs.close()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if e.bgp != nil {
		e.bgp.Close() // withdraws what it learned
	}
	if e.links != nil {
		e.removeLinks(ctx)
	}

	if e.firewall != nil && e.fwSet {
		e.firewall.Set(ctx, FirewallOwner, nil)
	}
	st := *e.s.status.Load()
	st.Connected = false
	e.s.status.Store(&st)
}
