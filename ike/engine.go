package ike

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"toride/ike/charon"
	"toride/ike/internal/icmpprobe"
	"toride/ike/internal/vici"
)

var errNotConnected = errors.New("ike: not connected to charon")

// Engine timing. Initiations are retried at most every initiateRetry; a missing IKE_SA is initiated after
// absentGrace (charon may be re-creating it itself, e.g. DPD restart); a promotion not visible after
// promoteRetry is issued again.
const (
	initiateRetry = 5 * time.Second
	absentGrace   = time.Second
	promoteRetry  = 5 * time.Second
	callTimeout   = 10 * time.Second
	probeWindow   = 20
)

type probeEvent struct {
	tunnel string
	gen    uint64
	res    icmpprobe.Result
}

// engine is the state owned by Service's goroutine. Nothing here is touched by any other goroutine.
type engine struct {
	s     *Service
	addrs *addrManager
	log   *slog.Logger

	client *vici.Client
	events <-chan vici.Event
	starts int // supervisor's Starts when we connected

	haveCfg bool
	plans   []*connPlan
	loaded  map[string][32]byte // tunnel name → hash of what the running charon has loaded
	fwHash  [32]byte
	fwSet   bool
	applied bool
	lastErr string

	tunnels map[string]*tunnelState
	conns   map[string]*connState
	gen     uint64 // prober generations
	// lineage maps the unique id of each net CHILD_SA to the install order of its lineage (see failover.go): a
	// number from lineageSeq, taken when the engine learns of a fresh install. Charon's unique ids cannot give
	// that order: they are handed out when a negotiation starts, and of two tunnels negotiating at once the one
	// that started first may well install last.
	lineage    map[uint64]uint64
	lineageSeq uint64
	// lineageAt holds when the engine learned of each lineage (by its order number).
	lineageAt map[uint64]time.Time
}

type tunnelState struct {
	plan *tunnelPlan
	conn *connPlan

	// From the last resync. nets are the installed net CHILD_SAs, oldest lineage first.
	ike    *vici.IKESA
	ikeIDs []uint64
	probe  *vici.ChildSA
	nets   []vici.ChildSA

	prober    *icmpprobe.Prober
	proberKey string
	proberGen uint64
	probeSA   uint64 // unique id of the probe CHILD_SA the loss count refers to
	window    [probeWindow]bool
	nres      int
	widx      int
	sent      uint64
	lost      int  // consecutive
	answered  bool // the target has answered over this tunnel (any SA since the last forced restart)
	rtt       time.Duration

	healthy      bool
	healthySince time.Time
	lastChange   time.Time
	absentSince  time.Time
	seenIKE      bool // an IKE_SA was seen since the last (re)connect or forced restart
	lastInit     map[string]time.Time
	lastRestart  time.Time
	promotedAt   time.Time
	promotedSeq  uint64 // lineageSeq when the last promotion was issued: a newer lineage here means it is done
	terminating  map[uint64]bool
	failovers    uint64
	restarts     uint64
}

type connState struct {
	plan      *connPlan
	steer     steering
	active    int
	failovers uint64
	failbacks uint64
}

func newEngine(s *Service, addrs *addrManager) *engine {
	return &engine{
		s:         s,
		addrs:     addrs,
		log:       s.opts.Logger,
		loaded:    map[string][32]byte{},
		tunnels:   map[string]*tunnelState{},
		conns:     map[string]*connState{},
		lineage:   map[uint64]uint64{},
		lineageAt: map[uint64]time.Time{},
	}
}

func (e *engine) run(ctx context.Context) {
	defer close(e.s.done)
	defer e.shutdown()
	resync := time.NewTicker(e.s.opts.ResyncInterval)
	defer resync.Stop()
	e.connect(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-e.s.reqs:
			req.reply <- e.set(req.ctx, req.cfg)
		case <-e.s.sup.Changes():
			e.connect(ctx)
		case ev, ok := <-e.events:
			if !ok {
				e.log.Warn("VICI event session ended")
				e.disconnect()
				break
			}
			e.onEvent(ev)
			e.drainEvents() // coalesce a burst of events into one resync
			e.resync(ctx)
		case ev := <-e.s.probes:
			e.onProbe(ev)
			e.evaluate(ctx)
		case <-resync.C:
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
		e.publish()
	}
}

// connect attaches to a running charon we are not attached to yet, and loads everything into it.
func (e *engine) connect(ctx context.Context) {
	h := e.s.sup.Health()
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
	c, err := vici.Dial(cctx, e.s.sup.Socket())
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
	e.lineage, e.lineageAt = map[uint64]uint64{}, map[uint64]time.Time{}
	for _, st := range e.tunnels {
		st.ike, st.ikeIDs, st.probe, st.nets = nil, nil, nil, nil
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
	now := time.Now()
	for _, st := range e.tunnels {
		if st.prober != nil {
			st.prober.SetEnabled(false)
		}
		st.ike, st.ikeIDs, st.probe, st.nets = nil, nil, nil, nil
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

// set stores cfg as the desired state and applies it.
func (e *engine) set(ctx context.Context, cfg Config) error {
	e.plans = plan(cfg, e.s.backend)
	e.haveCfg = true
	if e.client == nil {
		e.applied = false
		return errNotConnected
	}
	err := e.apply(ctx)
	e.resync(ctx)
	return err
}

// apply loads the desired plans into the running charon and removes what is no longer desired.
func (e *engine) apply(ctx context.Context) error {
	if e.client == nil {
		return errNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, 3*callTimeout)
	defer cancel()
	desired := map[string]*tunnelPlan{}
	conns := map[string]*connState{}
	var inside []netip.Addr
	for _, cp := range e.plans {
		cs := e.conns[cp.name]
		if cs == nil {
			cs = &connState{active: -1}
		}
		cs.plan = cp
		conns[cp.name] = cs
		for _, tp := range cp.tunnels {
			desired[tp.name] = tp
			inside = append(inside, tp.localInside)
		}
	}
	e.conns = conns
	var errs []error
	for name, st := range e.tunnels {
		if desired[name] == nil {
			errs = append(errs, e.removeTunnel(ctx, st))
			delete(e.tunnels, name)
		}
	}
	if err := e.addrs.sync(inside); err != nil {
		errs = append(errs, fmt.Errorf("inside addresses: %w", err))
	}
	for _, cp := range e.plans {
		for _, tp := range cp.tunnels {
			st := e.tunnels[tp.name]
			if st == nil {
				st = &tunnelState{lastInit: map[string]time.Time{}, terminating: map[uint64]bool{}}
				e.tunnels[tp.name] = st
			}
			st.plan, st.conn = tp, cp
			if err := e.load(ctx, st); err != nil {
				errs = append(errs, err)
			}
			if err := e.ensureProber(st); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := e.applyFirewall(ctx); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	e.applied = err == nil
	e.setErr(err)
	return err
}

// load loads a tunnel's secret and connection if charon does not have this exact version yet. A changed tunnel's
// IKE_SA is torn down so that it is re-established with the new settings.
func (e *engine) load(ctx context.Context, st *tunnelState) error {
	p := st.plan
	old, had := e.loaded[p.name]
	if had && old == p.hash {
		return nil
	}
	if err := e.client.LoadShared(ctx, p.secret); err != nil {
		return fmt.Errorf("tunnel %s: %w", p.name, err)
	}
	if err := e.client.LoadConn(ctx, p.name, p.ikeConn); err != nil {
		return fmt.Errorf("tunnel %s: %w", p.name, err)
	}
	e.loaded[p.name] = p.hash
	if had {
		e.log.Info("tunnel changed; re-establishing", "tunnel", p.name)
		for _, id := range st.ikeIDs {
			if err := e.client.TerminateIKE(ctx, id, true); err != nil {
				e.log.Warn("terminate changed tunnel", "tunnel", p.name, "err", err)
			}
		}
		st.ike, st.ikeIDs, st.probe, st.nets = nil, nil, nil, nil
	}
	return nil
}

func (e *engine) removeTunnel(ctx context.Context, st *tunnelState) error {
	name := st.plan.name
	e.log.Info("removing tunnel", "tunnel", name)
	if st.prober != nil {
		st.prober.Close()
		st.prober = nil
	}
	if e.client == nil {
		return nil
	}
	var errs []error
	for _, id := range st.ikeIDs {
		if err := e.client.TerminateIKE(ctx, id, true); err != nil {
			errs = append(errs, err)
		}
	}
	if err := e.client.UnloadConn(ctx, name); err != nil && !strings.Contains(err.Error(), "not found") {
		errs = append(errs, err)
	}
	if err := e.client.UnloadShared(ctx, st.plan.secret.ID); err != nil && !strings.Contains(err.Error(), "not found") {
		errs = append(errs, err)
	}
	delete(e.loaded, name)
	return errors.Join(errs...)
}

// unloadStrays unloads connections and secrets charon has that are not ours any more (left by an earlier
// configuration in the same charon).
func (e *engine) unloadStrays(ctx context.Context) {
	if e.client == nil {
		return
	}
	names, err := e.client.ListConns(ctx)
	if err != nil {
		return
	}
	for _, n := range names {
		if _, ok := e.loaded[n]; !ok {
			e.client.UnloadConn(ctx, n)
		}
	}
	ids, err := e.client.GetShared(ctx)
	if err != nil {
		return
	}
	for _, id := range ids {
		name, ok := strings.CutPrefix(id, "toride-")
		if _, loaded := e.loaded[name]; ok && !loaded {
			e.client.UnloadShared(ctx, id)
		}
	}
}

func (e *engine) applyFirewall(ctx context.Context) error {
	if e.s.opts.Firewall == nil {
		return nil
	}
	cfg := Config{Connections: map[string]*Connection{}}
	for _, cp := range e.plans {
		c := &Connection{Tunnels: map[string]*Tunnel{}}
		for _, tp := range cp.tunnels {
			ra, _ := netip.ParseAddr(tp.ikeConn.RemoteAddrs[0])
			c.Tunnels[tp.name] = &Tunnel{RemoteAddress: ra}
		}
		cfg.Connections[cp.name] = c
	}
	rules := FirewallRules(cfg)
	h := hashOf(rules)
	if e.fwSet && h == e.fwHash {
		return nil
	}
	if err := e.s.opts.Firewall.Set(ctx, FirewallOwner, rules); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	e.fwHash, e.fwSet = h, true
	return nil
}

// ensureProber (re)starts the tunnel's prober when its parameters changed.
func (e *engine) ensureProber(st *tunnelState) error {
	ka := st.conn.keepalive
	p := st.plan
	key := fmt.Sprint(ka.Disabled, p.localInside, p.probeTarget, ka.Interval, ka.Timeout)
	if key == st.proberKey && (st.prober != nil || ka.Disabled) {
		return nil
	}
	if st.prober != nil {
		st.prober.Close()
		st.prober = nil
	}
	st.proberKey = key
	st.nres, st.widx, st.lost, st.answered = 0, 0, 0, false // perhaps another target
	if ka.Disabled {
		return nil
	}
	e.gen++
	gen, name := e.gen, p.name
	var idb [2]byte
	rand.Read(idb[:])
	pr, err := icmpprobe.Start(icmpprobe.Config{
		NetnsPath: e.s.opts.NetnsPath,
		Source:    p.localInside,
		Target:    p.probeTarget,
		Interval:  ka.Interval,
		Timeout:   ka.Timeout,
		ID:        binary.BigEndian.Uint16(idb[:]),
	}, func(r icmpprobe.Result) {
		select {
		case e.s.probes <- probeEvent{tunnel: name, gen: gen, res: r}:
		default: // the engine is busy; a dropped result is neither a loss nor an answer
		}
	})
	if err != nil {
		return fmt.Errorf("tunnel %s keepalive: %w", p.name, err)
	}
	st.prober, st.proberGen = pr, gen
	return nil
}

func (e *engine) onProbe(ev probeEvent) {
	st := e.tunnels[ev.tunnel]
	if st == nil || st.proberGen != ev.gen {
		return
	}
	st.sent++
	st.window[st.widx] = ev.res.OK
	st.widx = (st.widx + 1) % probeWindow
	st.nres = min(st.nres+1, probeWindow)
	if ev.res.OK {
		st.lost = 0
		st.answered = true
		st.rtt = ev.res.RTT
	} else {
		st.lost++
	}
}

// drainEvents handles the events already queued, without waiting for more. A closed event channel is left to
// the run loop.
func (e *engine) drainEvents() {
	for {
		select {
		case ev, ok := <-e.events:
			if !ok {
				return
			}
			e.onEvent(ev)
		default:
			return
		}
	}
}

// freshLineage starts a lineage for a net CHILD_SA the engine just learned was freshly installed.
func (e *engine) freshLineage(uniqueID uint64) uint64 {
	e.lineageSeq++
	e.lineage[uniqueID] = e.lineageSeq
	e.lineageAt[e.lineageSeq] = time.Now()
	return e.lineageSeq
}

// onEvent records the install order of net CHILD_SAs: child-updown (up) announces a fresh install, which starts a
// lineage; child-rekey continues one. Charon raises child-updown right after installing, so the order of these
// events is the install order. Everything else comes from the resync that follows.
func (e *engine) onEvent(ev vici.Event) {
	switch ev.Name {
	case "child-updown":
		if !ev.Up {
			return
		}
		for _, sa := range ev.SAs {
			st := e.tunnels[sa.Name]
			if st == nil {
				continue
			}
			for _, ch := range sa.ChildSAs {
				if _, known := e.lineage[ch.UniqueID]; !known && ch.Name == st.plan.netChild {
					e.freshLineage(ch.UniqueID)
				}
			}
		}
	case "child-rekey":
		for _, r := range ev.Rekeys {
			l, ok := e.lineage[r.Old.UniqueID]
			if !ok {
				l = e.freshLineage(r.Old.UniqueID)
			}
			e.lineage[r.New.UniqueID] = l
		}
	}
}

// resync lists SAs and updates every tunnel's view, then evaluates.
func (e *engine) resync(ctx context.Context) {
	if e.client == nil {
		return
	}
	listed := make(map[uint64]bool, len(e.lineage)) // lineages known when the list was taken
	for id := range e.lineage {
		listed[id] = true
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	sas, err := e.client.ListSAs(cctx)
	cancel()
	if err != nil {
		e.setErr(err)
		e.disconnect()
		return
	}
	byName := map[string][]vici.IKESA{}
	present := map[uint64]bool{}
	for _, sa := range sas {
		byName[sa.Name] = append(byName[sa.Name], sa)
		for _, ch := range sa.ChildSAs {
			present[ch.UniqueID] = true
		}
	}
	// Events raised while list-sas ran announce installs it may already show: take their order first.
	e.drainEvents()
	var missed []missedNet
	for name, st := range e.tunnels {
		prev := st.nets
		st.ike, st.ikeIDs, st.probe, st.nets = nil, nil, nil, nil
		list := byName[name]
		for i := range list {
			sa := &list[i]
			st.ikeIDs = append(st.ikeIDs, sa.UniqueID)
			if st.ike == nil || ikeRank(sa) > ikeRank(st.ike) {
				st.ike = sa
			}
			for _, ch := range sa.ChildSAs {
				if ch.State != "INSTALLED" {
					continue
				}
				if ch.Name == st.plan.probeChild && (st.probe == nil || ch.ReqID > st.probe.ReqID) {
					c := ch
					st.probe = &c // the newest instance: the one whose policies come first
				}
				if ch.Name == st.plan.netChild {
					st.nets = append(st.nets, ch)
				}
			}
		}
		for _, n := range st.nets {
			if _, ok := e.lineage[n.UniqueID]; ok {
				continue
			}
			// Missed the event: a CHILD_SA with the reqid of one we saw before is its rekeyed successor;
			// anything else is a fresh install, ordered below.
			successor := false
			for _, p := range prev {
				if l, ok := e.lineage[p.UniqueID]; ok && p.ReqID == n.ReqID {
					e.lineage[n.UniqueID], successor = l, true
				}
			}
			if !successor {
				missed = append(missed, missedNet{n.UniqueID, n.InstallTime})
			}
		}
	}
	// Fresh installs whose events were missed: the longest installed first (install-time counts whole seconds
	// ago), then by unique id, the best guess left.
	slices.SortFunc(missed, func(a, b missedNet) int {
		return cmp.Or(cmp.Compare(b.installedAgo, a.installedAgo), cmp.Compare(a.uniqueID, b.uniqueID))
	})
	for _, m := range missed {
		e.freshLineage(m.uniqueID)
	}
	for _, st := range e.tunnels {
		slices.SortFunc(st.nets, func(a, b vici.ChildSA) int {
			return cmp.Or(cmp.Compare(e.lineage[a.UniqueID], e.lineage[b.UniqueID]), cmp.Compare(a.UniqueID, b.UniqueID))
		})
		for id := range st.terminating {
			if !slices.ContainsFunc(st.nets, func(c vici.ChildSA) bool { return c.UniqueID == id }) {
				delete(st.terminating, id)
			}
		}
	}
	live := map[uint64]bool{}
	for id, l := range e.lineage {
		if listed[id] && !present[id] { // gone; an install announced after the list stays
			delete(e.lineage, id)
			continue
		}
		live[l] = true
	}
	for l := range e.lineageAt {
		if !live[l] {
			delete(e.lineageAt, l)
		}
	}
	e.evaluate(ctx)
}

// missedNet is a net CHILD_SA first seen by a resync, not by its event.
type missedNet struct {
	uniqueID     uint64
	installedAgo int64
}

func ikeRank(sa *vici.IKESA) int {
	switch sa.State {
	case "ESTABLISHED":
		return 3
	case "CONNECTING", "REKEYING", "REKEYED":
		return 2
	}
	return 1
}

// evaluate brings tunnels up, judges their health and steers traffic.
func (e *engine) evaluate(ctx context.Context) {
	if e.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	now := time.Now()
	for _, st := range e.tunnels {
		e.bringUp(ctx, now, st)
		e.judge(ctx, now, st)
	}
	for _, cs := range e.conns {
		e.steer(ctx, now, cs)
	}
}

func (e *engine) initiate(ctx context.Context, now time.Time, st *tunnelState, child string) {
	if now.Sub(st.lastInit[child]) < initiateRetry {
		return
	}
	st.lastInit[child] = now
	if err := e.client.Initiate(ctx, st.plan.name, child); err != nil {
		e.log.Warn("initiate failed", "tunnel", st.plan.name, "child", child, "err", err)
	}
}

// bringUp initiates what a tunnel with StartupStart lacks: the IKE_SA (with the probe CHILD_SA), then the
// CHILD_SAs on an established IKE_SA.
func (e *engine) bringUp(ctx context.Context, now time.Time, st *tunnelState) {
	if !st.plan.start {
		return
	}
	if st.ike == nil {
		if st.absentSince.IsZero() {
			st.absentSince = now
		}
		// A tunnel never seen up, or torn down by us, is initiated at once; one that vanished by itself gets
		// a moment, since charon may be re-creating it (DPD restart).
		if !st.seenIKE || now.Sub(st.absentSince) >= absentGrace {
			e.initiate(ctx, now, st, st.plan.probeChild)
		}
		return
	}
	st.seenIKE = true
	st.absentSince = time.Time{}
	if st.ike.State != "ESTABLISHED" {
		return
	}
	if st.probe == nil {
		e.initiate(ctx, now, st, st.plan.probeChild)
	}
	if st.plan.netChild != "" && st.plan.netChild != st.plan.probeChild && len(st.nets) == 0 {
		// On libipsec this makes the tunnel the carrier; steering moves traffic back if it should not be.
		e.initiate(ctx, now, st, st.plan.netChild)
	}
}

// judge updates a tunnel's health and restarts a tunnel whose IKE_SA looks fine but whose data path is dead.
func (e *engine) judge(ctx context.Context, now time.Time, st *tunnelState) {
	ka := st.conn.keepalive
	if st.probe != nil && st.probe.UniqueID != st.probeSA {
		// A new probe SA (rekey, steering move, re-established tunnel) starts counting losses afresh, but keeps
		// what the tunnel taught: a target that answered before answers over a working new SA too, so lost probes
		// on it condemn the tunnel at once instead of leaving it to DPD until its first answer.
		st.probeSA, st.lost = st.probe.UniqueID, 0
	}
	if st.prober != nil {
		st.prober.SetEnabled(st.probe != nil)
	}
	ikeUp := st.ike != nil && st.ike.State == "ESTABLISHED"
	netUp := st.plan.netChild == "" || len(st.nets) > 0
	// Lost probes only condemn a tunnel whose target has answered over it: a target that never answers
	// (filtered, or an endpoint that ignores pings) must not make both tunnels flap forever. Such a tunnel is
	// judged by its SA states alone, and its status shows the loss.
	dead := !ka.Disabled && st.answered && st.lost >= ka.DownAfter
	healthy := ikeUp && netUp && (st.probe != nil || ka.Disabled) && !dead
	if healthy != st.healthy {
		st.healthy, st.lastChange = healthy, now
		if healthy {
			st.healthySince = now
		}
		state := "down"
		if healthy {
			state = "up"
		}
		e.log.Info("tunnel "+state, "tunnel", st.plan.name, "ike", saState(st.ike), "lost_probes", st.lost)
	}
	hold := max(10*time.Second, 2*time.Duration(ka.DownAfter)*ka.Interval)
	if ikeUp && st.probe != nil && dead && now.Sub(st.lastRestart) >= hold {
		e.log.Warn("tunnel data path dead; restarting it", "tunnel", st.plan.name, "lost_probes", st.lost)
		st.lastRestart = now
		st.restarts++
		for _, id := range st.ikeIDs {
			if err := e.client.TerminateIKE(ctx, id, true); err != nil {
				e.log.Warn("terminate", "tunnel", st.plan.name, "err", err)
			}
		}
		// Re-initiated by bringUp once charon has dropped it. The new SA must earn "answered" again: a target that
		// stopped answering for good gets this one restart, not one every hold period.
		st.absentSince, st.seenIKE, st.answered = time.Time{}, false, false
	}
}

// steer applies the failover policy of one connection.
func (e *engine) steer(ctx context.Context, now time.Time, cs *connState) {
	cp := cs.plan
	views := make([]tunnelView, len(cp.tunnels))
	states := make([]*tunnelState, len(cp.tunnels))
	for i, tp := range cp.tunnels {
		st := e.tunnels[tp.name]
		states[i] = st
		if st == nil {
			continue
		}
		v := tunnelView{healthy: st.healthy, healthySince: st.healthySince}
		for _, n := range st.nets {
			v.netOrder = append(v.netOrder, e.lineage[n.UniqueID])
			v.netInstalled = append(v.netInstalled, n.InstallTime)
		}
		views[i] = v
	}
	cur := carrier(e.s.backend, views)
	if cur >= 0 && e.s.backend == charon.BackendLibipsec && !e.orderCertain(states, cur) {
		// Two tunnels installed at nearly the same moment: which one libipsec put first is unknown. Say so,
		// and let decide move the traffic to where it belongs, which makes the order known.
		cur = -1
	}
	cs.active = cur
	if len(cp.tunnels) == 0 || cp.tunnels[0].netChild == "" {
		return // nothing to steer (BGP without static prefixes)
	}
	if d := decide(now, &cs.steer, views, cur, cp.failover.Preferred, cp.failover.HoldDown); d != nil {
		e.move(ctx, now, cs, states, cur, d)
	}
	if e.s.backend == charon.BackendLibipsec {
		// Keep one net lineage per tunnel: delete older instances once a newer one is installed.
		for _, st := range states {
			if st == nil || len(st.nets) < 2 {
				continue
			}
			newest, _ := e.newestLineage(st)
			for _, n := range st.nets {
				if e.lineage[n.UniqueID] == newest || st.terminating[n.UniqueID] {
					continue
				}
				st.terminating[n.UniqueID] = true
				if err := e.client.TerminateChild(ctx, n.UniqueID); err != nil {
					e.log.Warn("terminate old CHILD_SA", "tunnel", st.plan.name, "err", err)
				}
			}
		}
	}
}

func (e *engine) move(ctx context.Context, now time.Time, cs *connState, states []*tunnelState, cur int, d *decision) {
	tgt := states[d.target]
	if tgt == nil {
		return
	}
	from := "none"
	if cur >= 0 {
		from = states[cur].plan.name
	}
	if e.s.backend != charon.BackendLibipsec {
		// kernel-netlink: evict the unhealthy carrier; its policies pass to the other tunnel's SA.
		if d.failover && now.Sub(states[cur].lastRestart) >= promoteRetry {
			states[cur].lastRestart = now
			cs.failovers++
			states[cur].failovers++
			e.log.Warn("failover: evicting unhealthy tunnel", "connection", cs.plan.name, "from", from)
			for _, id := range states[cur].ikeIDs {
				e.client.TerminateIKE(ctx, id, true)
			}
		}
		return
	}
	if now.Sub(tgt.promotedAt) < promoteRetry && !e.promotionDone(tgt) {
		return // a promotion is under way
	}
	tgt.promotedAt, tgt.promotedSeq = now, e.lineageSeq
	switch {
	case d.failover:
		cs.failovers++
		states[cur].failovers++
		e.log.Warn("failover", "connection", cs.plan.name, "from", from, "to", tgt.plan.name)
	case d.failback:
		cs.failbacks++
		e.log.Info("failback after hold-down", "connection", cs.plan.name, "from", from, "to", tgt.plan.name)
	default:
		e.log.Info("steering traffic", "connection", cs.plan.name, "from", from, "to", tgt.plan.name)
	}
	cs.steer.movedAway = d.target != cs.plan.failover.Preferred
	if tgt.ike != nil && tgt.ike.Version == 1 {
		// IKEv1 would take a second identical quick mode for a rekey of the first (same reqid, same place in
		// libipsec's list): delete first. IKEv1 deletes are not acknowledged, so the old SA is gone before the
		// new quick mode starts.
		for _, n := range tgt.nets {
			tgt.terminating[n.UniqueID] = true
			if err := e.client.TerminateChild(ctx, n.UniqueID); err != nil {
				e.log.Warn("terminate for failover", "tunnel", tgt.plan.name, "err", err)
			}
		}
	}
	// A fresh net CHILD_SA on the target takes the traffic as soon as it is installed.
	if err := e.client.Initiate(ctx, tgt.plan.name, tgt.plan.netChild); err != nil {
		e.log.Warn("initiate for failover", "tunnel", tgt.plan.name, "err", err)
	}
	tgt.lastInit[tgt.plan.netChild] = now
}

// orderWindow is how close together two fresh installs on different tunnels must be learned for their order to
// be unknown. Charon installs on several threads and raises the events after installing, so two installs a few
// milliseconds apart may be announced in the other order; a second is far more than that race needs.
const orderWindow = time.Second

// orderCertain reports whether the newest net lineage of tunnel cur is known to be newer than every other
// tunnel's: learned more than orderWindow after them, or the product of a promotion the engine issued after
// learning of them.
func (e *engine) orderCertain(states []*tunnelState, cur int) bool {
	kc, ok := e.newestLineage(states[cur])
	if !ok {
		return true
	}
	for i, st := range states {
		k, ok := e.newestLineage(st)
		if i == cur || !ok {
			continue
		}
		promoted := k <= states[cur].promotedSeq && states[cur].promotedSeq < kc
		if !promoted && e.lineageAt[kc].Sub(e.lineageAt[k]) <= orderWindow {
			return false
		}
	}
	return true
}

// promotionDone reports whether a fresh net CHILD_SA was installed on st since its last promotion was issued.
// Only a promotion still under way holds back the next one: a failover to a tunnel that took the traffic a
// moment ago (say, during a fail-back's hold-down) must not wait for promoteRetry.
func (e *engine) promotionDone(st *tunnelState) bool {
	k, ok := e.newestLineage(st)
	return ok && k > st.promotedSeq
}

// newestLineage returns the install order of a tunnel's newest net lineage (its nets are sorted oldest first),
// and false when it has none.
func (e *engine) newestLineage(st *tunnelState) (uint64, bool) {
	if st == nil || len(st.nets) == 0 {
		return 0, false
	}
	return e.lineage[st.nets[len(st.nets)-1].UniqueID], true
}

// publish stores a new Status snapshot.
func (e *engine) publish() {
	st := Status{
		Backend:      e.s.backend,
		Capabilities: e.s.caps,
		Charon:       e.s.sup.Health(),
		Connected:    e.client != nil,
		Applied:      e.applied,
		LastError:    e.lastErr,
		Connections:  []ConnectionStatus{},
	}
	for _, cp := range e.plans {
		cs := e.conns[cp.name]
		c := ConnectionStatus{Name: cp.name, ActiveTunnel: -1}
		if cs != nil {
			c.ActiveTunnel, c.Failovers, c.Failbacks = cs.active, cs.failovers, cs.failbacks
		}
		for i, tp := range cp.tunnels {
			ts := TunnelStatus{Name: tp.name, RemoteAddress: tp.ikeConn.RemoteAddrs[0], State: "down",
				IKESA: "NONE", ChildSA: "NONE", Active: c.ActiveTunnel == i}
			if t := e.tunnels[tp.name]; t != nil {
				t.fill(&ts)
			}
			c.Tunnels = append(c.Tunnels, ts)
		}
		st.Connections = append(st.Connections, c)
	}
	e.s.status.Store(&st)
}

func (t *tunnelState) fill(ts *TunnelStatus) {
	if t.healthy {
		ts.State = "up"
	}
	ts.IKESA = saState(t.ike)
	if t.ike != nil {
		ts.IKEAlgorithms = algorithms(t.ike.EncrAlg, t.ike.EncrKeysize, t.ike.IntegAlg, t.ike.PRFAlg, t.ike.DHGroup)
		// kernel-libipsec makes charon fake a NAT to force UDP encapsulation: only a real one counts.
		ts.NATDetected = t.ike.NATLocal || (t.ike.NATRemote && !t.ike.NATFake)
	}
	children := append([]vici.ChildSA(nil), t.nets...)
	if t.probe != nil {
		children = append(children, *t.probe)
	}
	if n := len(t.nets); n > 0 {
		ts.ChildSA = t.nets[n-1].State
		c := t.nets[n-1]
		ts.ChildAlgorithms = algorithms(c.EncrAlg, c.EncrKeysize, c.IntegAlg, "", c.DHGroup)
	} else if t.probe != nil && t.plan.netChild == "" {
		ts.ChildSA = t.probe.State
		ts.ChildAlgorithms = algorithms(t.probe.EncrAlg, t.probe.EncrKeysize, t.probe.IntegAlg, "", t.probe.DHGroup)
	}
	for _, c := range children {
		ts.BytesIn += c.BytesIn
		ts.BytesOut += c.BytesOut
		ts.PacketsIn += c.PacketsIn
		ts.PacketsOut += c.PacketsOut
		ts.UDPEncap = ts.UDPEncap || c.Encap
	}
	if t.nres > 0 {
		lost := 0
		for i := 0; i < t.nres; i++ {
			if !t.window[i] {
				lost++
			}
		}
		ts.ProbeLoss = float64(lost) / float64(t.nres)
	}
	ts.ProbeRTTMillis = float64(t.rtt.Microseconds()) / 1000
	ts.ProbesSent = t.sent
	ts.ProbeAnswered = t.answered
	ts.Failovers, ts.Restarts, ts.LastChange = t.failovers, t.restarts, t.lastChange
}

func saState(sa *vici.IKESA) string {
	if sa == nil {
		return "NONE"
	}
	return sa.State
}

func algorithms(encr string, keysize int, integ, prf, dh string) string {
	var parts []string
	if encr != "" {
		if keysize > 0 {
			encr = fmt.Sprintf("%s-%d", encr, keysize)
		}
		parts = append(parts, encr)
	}
	for _, p := range []string{integ, prf, dh} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
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
	if e.s.opts.Firewall != nil && e.fwSet {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		e.s.opts.Firewall.Set(ctx, FirewallOwner, nil)
		cancel()
	}
	st := *e.s.status.Load()
	st.Connected = false
	e.s.status.Store(&st)
}
