// Package bgp is the appliance's BGP speaker: one eBGP session per IPsec tunnel, run between the tunnels' inside
// addresses, announcing the appliance's local networks and handing the best path of every learned prefix to a
// RouteSink (the IPsec engine, which routes it over that tunnel's interface).
//
// It is built on github.com/osrg/gobgp/v4 (v4.8.0) used as a library, in-process, with no gRPC listener. v4
// rather than v3: v4 logs through log/slog as the rest of torided does (v3 brings logrus), its API speaks
// net/netip, and v4 is the line gobgp maintains.
//
//	Set(Config) ──diff──► gobgp BgpServer ◄── TCP 179 ──► the cloud's BGP speakers, one per tunnel
//	                      │  import policy: local preference per neighbor
//	                      │  export policy: only our networks, AS-path prepend per neighbor
//	                      └─ best-path and peer events ──► resync goroutine ──Install/Withdraw──► RouteSink
//
// Set is idempotent: it diffs the new configuration against the applied one and changes only what differs (a
// changed ASN or router ID, which gobgp takes only at start, makes a new gobgp instance). The resync goroutine
// lists gobgp's table after every best-path or session event, and every ResyncInterval, and brings the sink to
// the best learned paths: a session that drops takes its paths with it, so their prefixes move to the other
// tunnel's session or are withdrawn.
//
// Network namespaces. A socket belongs to the namespace of the thread that creates it, for its whole life. gobgp
// makes its listener inside a management operation, which runs on the goroutine that calls BgpServer.Serve, and
// dials its sessions from per-neighbor goroutines of its own. With Opts.NetnsPath set, Serve runs on an OS thread
// locked inside that namespace (dataplane/nsutil), so the listener is made there and every session it accepts
// lives there too; the neighbors are passive, because gobgp's own dialing goroutines run on threads of the
// process's namespace, where the inside addresses do not exist. The cloud's side then opens the sessions (a
// BGP speaker, the cloud's and FRR's included, connects actively by default). With NetnsPath empty the speaker
// works in the caller's namespace and also dials out. Either way a session only comes up on its configured local
// address: gobgp binds its dials to it and drops an accepted connection that reached another address.
//
// Locking: Set and Close are serialised by one mutex; Status and Routes read gobgp and the applied
// configuration without taking it; the sink is called only from the resync goroutine (and by Close after that
// goroutine ended).
package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"toride/dataplane/nsutil"
)

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("bgp: speaker closed")

// Opts configure a Speaker. Sink is required.
type Opts struct {
	// Sink receives the best learned paths.
	Sink RouteSink
	// NetnsPath is the network namespace file (e.g. /run/netns/toride) the sessions run in; "" is the caller's.
	NetnsPath string
	// Logger receives gobgp's log; nil discards it.
	Logger *slog.Logger
	// ListenPort and PeerPort replace TCP port 179 on our side and the peers' (tests run two speakers in one
	// namespace without privileges); 0 means 179.
	ListenPort, PeerPort int
	// ResyncInterval is how often the sink is brought to gobgp's table besides after events; 0 means 2 s.
	ResyncInterval time.Duration
}

// Session timers: a dropped session is retried quickly, since the tunnel under it is what matters.
const (
	connectRetry    = 5 // seconds between connection attempts
	idleHoldAfterUp = 1 // seconds idle after a session ended before the next attempt
	bgpPort         = 179
	sinkTimeout     = 10 * time.Second
)

// Speaker runs the BGP sessions of a Config. It is safe for concurrent use; the zero value is not usable: make
// one with New.
type Speaker struct {
	opts Opts
	log  *slog.Logger

	mu      sync.Mutex // serialises Set and Close; guards everything below up to cur
	closed  bool
	applied Config // defaulted; meaningful only while cur is set
	dirty   bool   // a Set failed half-way: the next one starts a new instance

	cur atomic.Pointer[instance] // the running gobgp, nil before the first Set and after Close
	// swap is held for writing while one gobgp server is replaced by another, and for reading by every call
	// into the running one from outside Set. gobgp's StartBgp writes package-level route-selection options
	// that its ListPath reads, so the new server must not start while the old one is still being listed.
	swap sync.RWMutex
	view atomic.Pointer[Config] // the applied configuration, for Status, Routes and resync

	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	installed map[netip.Prefix]Route // owned by the resync goroutine, then by Close
}

// instance is one gobgp server and what Set added to it.
type instance struct {
	srv         *server.BgpServer
	served      chan struct{} // closed when Serve returned
	watchCancel context.CancelFunc
	announced   map[netip.Prefix]uuid.UUID
}

// New returns a speaker with no sessions; the first Set starts them.
func New(opts Opts) (*Speaker, error) {
	if opts.Sink == nil {
		return nil, errors.New("bgp: Opts.Sink is required")
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Speaker{
		opts:      opts,
		log:       log,
		kick:      make(chan struct{}, 1),
		ctx:       ctx,
		cancel:    cancel,
		installed: map[netip.Prefix]Route{},
	}
	s.view.Store(&Config{})
	s.wg.Add(1)
	go s.resyncLoop()
	return s, nil
}

// Set validates cfg and makes the speaker run it, changing only what differs from the configuration applied
// before; the same cfg twice changes nothing the second time. It returns a *ValidationError (wrapping
// ErrInvalidConfig) for an invalid cfg, ErrClosed after Close, or gobgp's error; after an error the next Set
// applies its configuration afresh. It does not wait for sessions: watch Status.
func (s *Speaker) Set(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	next := cfg.FillDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	inst := s.cur.Load()
	var p plan
	if inst == nil || s.dirty {
		p = diffFrom(Config{}, next)
		p.rebuild = true
	} else {
		p = diff(s.applied, next)
	}
	if p.empty() {
		return nil
	}
	if err := s.apply(ctx, inst, p, next); err != nil {
		s.dirty = true
		return err
	}
	s.dirty = false
	s.applied = next
	s.view.Store(&next)
	s.poke()
	return nil
}

func (s *Speaker) apply(ctx context.Context, inst *instance, p plan, next Config) error {
	if p.rebuild {
		var err error
		if inst, err = s.replace(ctx, inst, next); err != nil {
			return err
		}
	}
	srv := inst.srv
	for _, n := range p.remove {
		if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: n.PeerAddress.String()}); err != nil {
			return fmt.Errorf("bgp: remove neighbor %s: %w", n.Name, err)
		}
	}
	for _, pfx := range p.withdraw {
		id, ok := inst.announced[pfx]
		if !ok {
			continue
		}
		if err := srv.DeletePath(apiutil.DeletePathRequest{UUIDs: []uuid.UUID{id}}); err != nil {
			return fmt.Errorf("bgp: withdraw %s: %w", pfx, err)
		}
		delete(inst.announced, pfx)
	}
	if p.policy || p.rebuild {
		if err := setPolicies(ctx, srv, next); err != nil {
			return err
		}
	}
	for _, n := range p.add {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
			return fmt.Errorf("bgp: add neighbor %s: %w", n.Name, err)
		}
	}
	for _, pfx := range p.announce {
		path, err := localPath(pfx)
		if err != nil {
			return fmt.Errorf("bgp: announce %s: %w", pfx, err)
		}
		res, err := srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
		if err != nil {
			return fmt.Errorf("bgp: announce %s: %w", pfx, err)
		}
		inst.announced[pfx] = res[0].UUID
	}
	if p.policy && !p.rebuild && len(next.Neighbors) > 0 {
		// Policies apply to paths as they pass: re-run the kept Adj-RIB-In through the new import policy and
		// re-send what we announce through the new export policy. No session is reset.
		err := srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_DIRECTION_BOTH})
		if err != nil {
			return fmt.Errorf("bgp: apply the new preferences: %w", err)
		}
	}
	return nil
}

// replace stops old (if any) and starts a server for next, with no call from outside Set in flight.
func (s *Speaker) replace(ctx context.Context, old *instance, next Config) (*instance, error) {
	s.swap.Lock()
	defer s.swap.Unlock()
	if old != nil {
		s.cur.Store(nil)
		old.stop()
	}
	inst, err := s.start(ctx, next)
	if err != nil {
		return nil, err
	}
	s.cur.Store(inst)
	return inst, nil
}

// running calls fn with the running server, if there is one, holding it from being replaced meanwhile.
func (s *Speaker) running(fn func(*instance)) {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if inst := s.cur.Load(); inst != nil {
		fn(inst)
	}
}

// start makes a gobgp server for c's ASN and router ID, serving in the speaker's namespace.
func (s *Speaker) start(ctx context.Context, c Config) (*instance, error) {
	srv := server.NewBgpServer(server.LoggerOption(s.log, nil))
	inst := &instance{srv: srv, served: make(chan struct{}), announced: map[netip.Prefix]uuid.UUID{}}
	entered := make(chan error, 1)
	go func() {
		defer close(inst.served)
		serveIn(s.opts.NetnsPath, srv, entered)
	}()
	if err := <-entered; err != nil {
		srv.Stop() // Serve never ran: this only ends gobgp's own helpers
		<-inst.served
		return nil, fmt.Errorf("bgp: %w", err)
	}
	k := keyOf(c)
	global := &api.Global{Asn: c.LocalASN, RouterId: c.RouterID.String(), ListenPort: -1}
	if k.ipv4 {
		global.ListenAddresses = append(global.ListenAddresses, "0.0.0.0")
	}
	if k.ipv6 {
		global.ListenAddresses = append(global.ListenAddresses, "::")
	}
	if len(global.ListenAddresses) > 0 {
		global.ListenPort = int32(cmp.Or(s.opts.ListenPort, bgpPort))
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		inst.stop()
		return nil, fmt.Errorf("bgp: start (ASN %d, router ID %s): %w", c.LocalASN, c.RouterID, err)
	}
	wctx, cancel := context.WithCancel(s.ctx)
	inst.watchCancel = cancel
	err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnBestPath:   func([]*apiutil.Path, time.Time) { s.poke() },
		OnPeerUpdate: func(*apiutil.WatchEventMessage_PeerEvent, time.Time) { s.poke() },
	}, server.WatchBestPath(false), server.WatchPeer())
	if err != nil {
		inst.stop()
		return nil, fmt.Errorf("bgp: watch: %w", err)
	}
	return inst, nil
}

// serveIn runs srv.Serve, inside the namespace at netns if one is given, reporting on entered whether it could
// enter it (Serve does not run if not).
func serveIn(netns string, srv *server.BgpServer, entered chan<- error) {
	if netns == "" {
		entered <- nil
		srv.Serve()
		return
	}
	nsutil.OnLockedThread(func() bool {
		back, err := nsutil.Enter(netns)
		if err != nil {
			entered <- err
			return true
		}
		entered <- nil
		srv.Serve()
		return back()
	})
}

// stop ends the sessions (with a Cease notification) and the server, and waits for Serve to return.
func (inst *instance) stop() {
	if inst.watchCancel != nil {
		inst.watchCancel()
	}
	inst.srv.Stop()
	<-inst.served
}

func (s *Speaker) peer(n Neighbor) *api.Peer {
	hold := uint64(n.HoldTime / time.Second)
	return &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.PeerAddress.String(),
			PeerAsn:         n.PeerASN,
			AuthPassword:    string(n.Password),
			Description:     n.Name,
		},
		Transport: &api.Transport{
			LocalAddress: n.LocalAddress.String(),
			PassiveMode:  s.opts.NetnsPath != "",
			RemotePort:   uint32(s.opts.PeerPort),
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               hold,
			KeepaliveInterval:      max(hold/3, 1),
			ConnectRetry:           connectRetry,
			IdleHoldTimeAfterReset: idleHoldAfterUp,
		}},
	}
}

// Policy names in gobgp.
const (
	importPolicy = "toride-import"
	exportPolicy = "toride-export"
)

func neighborSet(n Neighbor) string { return "neighbor-" + n.PeerAddress.String() }

// setPolicies replaces gobgp's policies with c's: on import, each neighbor's local preference; on export, nothing
// learned from a neighbor (the appliance is no transit between tunnels), and each neighbor's prepend.
func setPolicies(ctx context.Context, srv *server.BgpServer, c Config) error {
	req := &api.SetPoliciesRequest{}
	in := &api.Policy{Name: importPolicy}
	out := &api.Policy{Name: exportPolicy, Statements: []*api.Statement{{
		Name:       exportPolicy + "-no-transit",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_EXTERNAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
	}}}
	for _, n := range c.Neighbors {
		set := neighborSet(n)
		req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR,
			Name:        set,
			List:        []string{netip.PrefixFrom(n.PeerAddress, n.PeerAddress.BitLen()).String()},
		})
		match := &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: set}}
		in.Statements = append(in.Statements, &api.Statement{
			Name:       importPolicy + "-" + n.PeerAddress.String(),
			Conditions: match,
			Actions: &api.Actions{
				RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
				LocalPref:   &api.LocalPrefAction{Value: n.LocalPreference},
			},
		})
		if n.Prepend > 0 {
			out.Statements = append(out.Statements, &api.Statement{
				Name:       exportPolicy + "-" + n.PeerAddress.String(),
				Conditions: match,
				Actions: &api.Actions{
					RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
					AsPrepend:   &api.AsPrependAction{Asn: c.LocalASN, Repeat: uint32(n.Prepend)},
				},
			})
		}
	}
	req.Policies = []*api.Policy{out}
	if len(in.Statements) > 0 {
		req.Policies = append(req.Policies, in)
	}
	if err := srv.SetPolicies(ctx, req); err != nil {
		return fmt.Errorf("bgp: set policies: %w", err)
	}
	assign := func(dir api.PolicyDirection, p *api.Policy) error {
		a := &api.PolicyAssignment{Name: "global", Direction: dir, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT}
		if len(p.Statements) > 0 {
			a.Policies = []*api.Policy{{Name: p.Name}}
		}
		if err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
			return fmt.Errorf("bgp: assign policy %s: %w", p.Name, err)
		}
		return nil
	}
	if err := assign(api.PolicyDirection_POLICY_DIRECTION_IMPORT, in); err != nil {
		return err
	}
	return assign(api.PolicyDirection_POLICY_DIRECTION_EXPORT, out)
}

// localPath is the path announcing one of our networks; gobgp sets the next hop to the session's local address.
func localPath(p netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, err
	}
	origin := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	if p.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		return &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{origin, nh}}, nil
	}
	mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
	if err != nil {
		return nil, err
	}
	return &apiutil.Path{Family: bgp.RF_IPv6_UC, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{origin, mp}}, nil
}

// Close ends the sessions (the peers get a Cease notification), withdraws every route it installed from the sink
// and stops the speaker's goroutines. It is idempotent.
func (s *Speaker) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	inst := s.cur.Swap(nil)
	s.view.Store(&Config{})
	s.mu.Unlock()
	if inst != nil {
		inst.stop()
	}
	s.cancel()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), sinkTimeout)
	defer cancel()
	var errs []error
	for _, pfx := range slices.SortedFunc(maps.Keys(s.installed), comparePrefix) {
		if err := s.opts.Sink.Withdraw(ctx, pfx); err != nil {
			errs = append(errs, fmt.Errorf("bgp: withdraw %s: %w", pfx, err))
			continue
		}
		delete(s.installed, pfx)
	}
	return errors.Join(errs...)
}

// poke asks the resync goroutine for a pass; it never blocks.
func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Speaker) resyncLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		s.resync()
	}
}

// resync brings the sink to the best learned path of every prefix.
func (s *Speaker) resync() {
	want := map[netip.Prefix]Route{}
	var err error
	s.running(func(inst *instance) {
		err = listLearned(inst.srv, neighborNames(s.view.Load()), func(r LearnedRoute) {
			if r.Best {
				want[r.Prefix] = Route{Prefix: r.Prefix, NextHop: r.NextHop, Neighbor: r.Neighbor}
			}
		})
	})
	if err != nil {
		return // the instance is being closed: the next pass sees the new one
	}
	ctx, cancel := context.WithTimeout(s.ctx, sinkTimeout)
	defer cancel()
	for _, pfx := range slices.SortedFunc(maps.Keys(s.installed), comparePrefix) {
		if _, ok := want[pfx]; ok {
			continue
		}
		if err := s.opts.Sink.Withdraw(ctx, pfx); err != nil {
			s.log.Warn("bgp: withdraw a learned route", "prefix", pfx, "err", err)
			continue
		}
		delete(s.installed, pfx)
	}
	for _, pfx := range slices.SortedFunc(maps.Keys(want), comparePrefix) {
		r := want[pfx]
		if s.installed[pfx] == r {
			continue
		}
		if err := s.opts.Sink.Install(ctx, r); err != nil {
			s.log.Warn("bgp: install a learned route", "prefix", pfx, "neighbor", r.Neighbor, "err", err)
			continue
		}
		s.installed[pfx] = r
	}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func neighborNames(c *Config) map[netip.Addr]string {
	names := map[netip.Addr]string{}
	for _, n := range c.Neighbors {
		names[n.PeerAddress] = n.Name
	}
	return names
}
