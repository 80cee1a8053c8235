package ike

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"strconv"
	"time"

	"toride/dataplane/nft"
	"toride/dataplane/xfrm"
)

// Route-based tunnels: where the kernel has ESP and xfrm interfaces, each tunnel is an xfrm interface bound by its
// if_id to a CHILD_SA of 0.0.0.0/0 both ways, and the remote networks are routed into the interface of the tunnel
// that should carry them. Moving traffic is one route replacement, and which tunnel carries it is read from the
// routing table, never inferred from the order charon installed SAs in. Elsewhere (kernel-libipsec, or a kernel
// without xfrm interfaces) the policy-based mode of failover.go runs.

// Mode is how traffic enters the tunnels.
type Mode string

// The modes.
const (
	// ModeRouteBased routes traffic into one xfrm interface per tunnel.
	ModeRouteBased Mode = "route-based"
	// ModePolicyBased lets the tunnels' traffic selectors (IPsec policies) capture traffic.
	ModePolicyBased Mode = "policy-based"
)

// tunnelLinks is the kernel side of route-based tunnels. *xfrm.Tunnels implements it.
type tunnelLinks interface {
	Set(want []xfrm.Interface) error
	SetRoutes(want map[netip.Prefix]string) error
	Routes() (map[netip.Prefix]string, error)
	// Stats returns what the kernel counted per SA.
	Stats() ([]xfrm.SAStats, error)
	// Watch reports the kernel's SA expiries and acquires until ctx ends.
	Watch(ctx context.Context, fn func(xfrm.Event)) error
	// RemoveStale deletes the SAs of the listed if_ids installed up to the given time that keep does not list.
	RemoveStale(ifIDs []uint32, keep map[uint32]bool, before time.Time) (int, error)
	Close()
}

// kernelCounters is what the kernel counted on a tunnel's SAs (those bound to its if_id), summed.
type kernelCounters struct {
	replayDrops, integrityFailures uint64
}

// readKernelCounters takes every tunnel's counters from the kernel's SAs. SAs that are gone take their counts
// with them: the figures are those of the SAs the tunnel has now.
func (e *engine) readKernelCounters() {
	stats, err := e.links.Stats()
	if err != nil {
		e.log.Debug("reading the kernel's SA counters failed", "err", err)
		return
	}
	byIfID := map[uint32]kernelCounters{}
	for _, s := range stats {
		c := byIfID[s.IfID]
		c.replayDrops += uint64(s.ReplayDrops)
		c.integrityFailures += uint64(s.IntegrityFailures)
		byIfID[s.IfID] = c
	}
	for _, st := range e.tunnels {
		st.kernel = byIfID[st.plan.link.IfID]
	}
}

// kernelEvent handles what the kernel's XFRM monitor announced. A hard expiry or an acquire on one of the
// tunnels' interfaces means a tunnel lacks the SA its traffic needs, now: look at charon at once instead of at
// the next resync, so that the tunnel is judged and re-initiated without waiting.
func (e *engine) kernelEvent(ctx context.Context, ev xfrm.Event) {
	var st *tunnelState
	for _, t := range e.tunnels {
		if ev.IfID != 0 && t.plan.link.IfID == ev.IfID {
			st = t
		}
	}
	if st == nil || ev.Kind == xfrm.SoftExpired {
		return // not ours, or a rekey charon is about to make
	}
	st.kernelEvents++
	e.log.Info("kernel: "+ev.Kind.String(), "tunnel", st.plan.name, "spi", fmt.Sprintf("%#x", ev.SPI))
	e.resync(ctx)
}

// ClampOwner is the owner of the engine's MSS clamps in the firewall.
const ClampOwner = "ike"

// ifIDs hands out the tunnels' if_ids: a hash of the tunnel's name, so that a tunnel keeps its if_id (and its
// interface is not re-created) whatever other tunnels come and go; a collision takes the next free number.
type ifIDs map[uint32]bool

func (ids ifIDs) take(tunnel string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(tunnel))
	id := h.Sum32() & 0x7fffffff
	for id == 0 || ids[id] {
		id = (id + 1) & 0x7fffffff
	}
	ids[id] = true
	return id
}

// linkName is the interface name of a tunnel: its own name ("<connection>-t1") when that fits Linux's 15 bytes,
// else one made of its if_id.
func linkName(tunnel string, ifID uint32) string {
	if len(tunnel) <= 15 {
		return tunnel
	}
	return fmt.Sprintf("xfrm-%08x", ifID)
}

// applyLinks makes the kernel's tunnel interfaces and MSS clamps those of the plans.
func (e *engine) applyLinks(ctx context.Context) error {
	var links []xfrm.Interface
	var clamps []nft.Clamp
	for _, cp := range e.plans {
		for _, tp := range cp.tunnels {
			links = append(links, tp.link)
			clamps = append(clamps, nft.Clamp{Interface: tp.link.Name, MSS: uint16(tp.mss)})
		}
	}
	var errs []error
	if err := e.links.Set(links); err != nil {
		errs = append(errs, fmt.Errorf("tunnel interfaces: %w", err))
	}
	if e.firewall != nil {
		h := hashOf(clamps)
		if !e.clampsSet || h != e.clampsHash {
			if err := e.firewall.SetClamps(ctx, ClampOwner, clamps); err != nil {
				errs = append(errs, fmt.Errorf("MSS clamps: %w", err))
			} else {
				e.clampsHash, e.clampsSet = h, true
			}
		}
	}
	return errors.Join(errs...)
}

// steerRoutes is steering in route-based mode, for every connection at once: the carrier of each is the tunnel
// its remote networks are routed into, decide says where they should be, and one SetRoutes moves what must move.
// Until a tunnel is healthy the routes point at the preferred one, whose interface drops what it cannot carry:
// traffic for the remote networks never leaves unencrypted by another route.
func (e *engine) steerRoutes(now time.Time) {
	have, err := e.links.Routes()
	if err != nil {
		e.log.Warn("reading the tunnel routes failed", "err", err)
		return
	}
	want := map[netip.Prefix]string{}
	for _, cp := range e.plans {
		cs := e.conns[cp.name]
		if cs == nil || len(cp.remote) == 0 {
			continue
		}
		// The static remote networks first: what BGP learns never takes their place.
		views := make([]tunnelView, len(cp.tunnels))
		for i, tp := range cp.tunnels {
			if st := e.tunnels[tp.name]; st != nil {
				views[i] = tunnelView{healthy: st.healthy, healthySince: st.healthySince}
			}
		}
		cur := routedTo(cp, cp.remote, have)
		target := cur
		if d := decide(now, &cs.steer, views, cur, cp.failover.Preferred, cp.failover.HoldDown); d != nil {
			target = d.target
			e.countMove(cs, cp, cur, d)
		} else if cur < 0 {
			target = cp.failover.Preferred
		}
		for _, p := range cp.remote {
			want[p.Masked()] = cp.tunnels[target].link.Name
		}
		cs.active = target
	}
	if e.learned != nil {
		learned := e.learned.snapshot()
		e.bgpRejected = nil
		for _, cp := range e.plans {
			if cs := e.conns[cp.name]; cs != nil && cp.bgp != nil {
				if a := e.learnedInto(cp, learned, want); len(cp.remote) == 0 {
					cs.active = a
				}
			}
		}
	}
	if maps.Equal(have, want) {
		return
	}
	if err := e.links.SetRoutes(want); err != nil {
		e.log.Warn("routing into the tunnels failed", "err", err)
		e.setErr(fmt.Errorf("tunnel routes: %w", err))
		// What the kernel has is what the status must say.
		if have, err = e.links.Routes(); err == nil {
			for _, cp := range e.plans {
				if cs := e.conns[cp.name]; cs != nil && len(cp.remote) > 0 {
					cs.active = routedTo(cp, cp.remote, have)
				}
			}
		}
	}
}

// routedTo returns the index of the tunnel all of prefixes are routed into, or -1 when they are not all routed
// into one of the connection's tunnels.
func routedTo(cp *connPlan, prefixes []netip.Prefix, routes map[netip.Prefix]string) int {
	idx := -1
	for n, p := range prefixes {
		i := -1
		for j, tp := range cp.tunnels {
			if routes[p.Masked()] == tp.link.Name {
				i = j
			}
		}
		if i < 0 || (n > 0 && i != idx) {
			return -1
		}
		idx = i
	}
	return idx
}

// countMove counts and logs a steering decision.
func (e *engine) countMove(cs *connState, cp *connPlan, cur int, d *decision) {
	from, to := "none", cp.tunnels[d.target].name
	if cur >= 0 {
		from = cp.tunnels[cur].name
	}
	cs.steer.movedAway = d.target != cp.failover.Preferred
	switch {
	case d.failover:
		cs.failovers++
		if st := e.tunnels[from]; st != nil {
			st.failovers++
		}
		e.log.Warn("failover", "connection", cp.name, "from", from, "to", to)
	case d.failback:
		cs.failbacks++
		e.log.Info("failback after hold-down", "connection", cp.name, "from", from, "to", to)
	default:
		e.log.Info("steering traffic", "connection", cp.name, "from", from, "to", to)
	}
}

// removeLinks takes the engine's routes, interfaces and clamps away (at shutdown).
func (e *engine) removeLinks(ctx context.Context) {
	if err := e.links.SetRoutes(nil); err != nil {
		e.log.Warn("removing the tunnel routes", "err", err)
	}
	if err := e.links.Set(nil); err != nil {
		e.log.Warn("removing the tunnel interfaces", "err", err)
	}
	if e.firewall != nil && e.clampsSet {
		e.firewall.SetClamps(ctx, ClampOwner, nil)
	}
	e.links.Close()
}

// removeStaleSAs deletes the SAs a charon that died without cleaning up left on a tunnel's interface: those
// installed before the running charon started (to the second; in that second, those it does not list). They would otherwise stay until their lifetime ends (an hour),
// counted on the tunnel. It waits for the tunnel's new CHILD_SA: the dead charon's policies stay until the new
// charon replaces them, and without an SA they would meanwhile send the tunnel's traffic to charon as acquires,
// which it answers with a second CHILD_SA.
func (e *engine) removeStaleSAs() {
	for _, st := range e.tunnels {
		if st.staleGone || len(st.nets) == 0 {
			continue
		}
		st.staleGone = true
		keep := map[uint32]bool{}
		for _, c := range st.nets {
			for _, spi := range []string{c.SPIIn, c.SPIOut} {
				if v, err := strconv.ParseUint(spi, 16, 32); err == nil {
					keep[uint32(v)] = true
				}
			}
		}
		n, err := e.links.RemoveStale([]uint32{st.plan.link.IfID}, keep, e.staleCut)
		if err != nil {
			e.log.Warn("removing a dead charon's SAs", "tunnel", st.plan.name, "err", err)
		}
		if n > 0 {
			e.log.Info("removed SAs a dead charon left in the kernel", "tunnel", st.plan.name, "count", n)
		}
	}
}
