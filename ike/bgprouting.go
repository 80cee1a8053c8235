package ike

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"toride/ike/bgp"
)

// Dynamic routing (routing mode bgp) in route-based mode: one BGP session per tunnel between its inside
// addresses (ike/bgp), announcing the connection's local networks; the best path of every learned prefix is
// routed into the interface of the tunnel it was learned over, beside the static routes (routed.go). A session
// that drops takes its prefixes along, so they move to the other tunnel's session by routing. The keepalive
// probes stay in force: a tunnel whose probes die while its session lingers gets the lowest local preference, so
// its prefixes move too (so does any tunnel not healthy). In policy-based mode on kernel-libipsec the learned
// prefixes are let into charon's table instead (gate.go), and the connection's traffic follows a tunnel whose
// session is established (steer.go).

// bgpSpeaker is the BGP speaker as the engine drives it. *bgp.Speaker implements it.
type bgpSpeaker interface {
	Set(ctx context.Context, cfg bgp.Config) error
	Status() bgp.Status
	Routes() []bgp.LearnedRoute
	Close() error
}

// unhealthyLocalPreference is given to what is learned over a tunnel whose probes say it carries nothing.
const unhealthyLocalPreference = 1

// learnedRoutes is the engine's bgp.RouteSink: the speaker's goroutine writes the best paths here and pokes the
// engine, which reads them on its own goroutine. It never blocks the speaker.
type learnedRoutes struct {
	mu     sync.Mutex
	routes map[netip.Prefix]bgp.Route
	poke   chan struct{}
}

func newLearnedRoutes() *learnedRoutes {
	return &learnedRoutes{routes: map[netip.Prefix]bgp.Route{}, poke: make(chan struct{}, 1)}
}

// Install implements bgp.RouteSink.
func (l *learnedRoutes) Install(_ context.Context, r bgp.Route) error {
	l.mu.Lock()
	l.routes[r.Prefix.Masked()] = r
	l.mu.Unlock()
	l.signal()
	return nil
}

// Withdraw implements bgp.RouteSink.
func (l *learnedRoutes) Withdraw(_ context.Context, p netip.Prefix) error {
	l.mu.Lock()
	delete(l.routes, p.Masked())
	l.mu.Unlock()
	l.signal()
	return nil
}

func (l *learnedRoutes) signal() {
	select {
	case l.poke <- struct{}{}:
	default:
	}
}

func (l *learnedRoutes) snapshot() map[netip.Prefix]bgp.Route {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.routes)
}

// bgpConfig is the speaker's configuration for the plans and the tunnels' health.
func (e *engine) bgpConfig() bgp.Config {
	var c bgp.Config
	nets := map[netip.Prefix]bool{}
	for _, cp := range e.plans {
		if cp.bgp == nil {
			continue
		}
		c.LocalASN = cp.bgp.LocalASN
		for _, p := range cp.local {
			nets[p.Masked()] = true
		}
		for _, tp := range cp.tunnels {
			pref := tp.bgp.LocalPreference
			if st := e.tunnels[tp.name]; st != nil && !st.healthy {
				pref = unhealthyLocalPreference
			}
			c.Neighbors = append(c.Neighbors, bgp.Neighbor{
				Name:            tp.name,
				LocalAddress:    tp.localInside,
				PeerAddress:     tp.remoteInside,
				PeerASN:         cp.bgp.RemoteASN,
				HoldTime:        time.Duration(cp.bgp.HoldTime),
				Password:        bgp.Password(cp.bgp.Password),
				LocalPreference: pref,
				Prepend:         tp.bgp.ASPathPrepend,
			})
		}
	}
	c.Networks = slices.SortedFunc(maps.Keys(nets), comparePrefixes)
	return c
}

// applyBGP gives the speaker its configuration when it changed.
func (e *engine) applyBGP(ctx context.Context) {
	if e.bgp == nil {
		return
	}
	want := e.bgpConfig()
	if len(want.Neighbors) == 0 {
		if !e.bgpSet || len(e.bgpApplied.Neighbors) == 0 {
			return // no BGP connection, and none before: no speaker to run
		}
		want.LocalASN = e.bgpApplied.LocalASN // the last connection went: end its sessions
	}
	if e.bgpSet && reflect.DeepEqual(want, e.bgpApplied) {
		return
	}
	if err := e.bgp.Set(ctx, want); err != nil {
		e.log.Warn("configuring the BGP speaker failed", "err", err)
		e.bgpErr = err.Error()
		return
	}
	e.bgpApplied, e.bgpSet, e.bgpErr = want, true, ""
}

// bgpSession says whether the BGP session over the tunnel is established, and since when.
func (e *engine) bgpSession(now time.Time, tunnel string) (up bool, since time.Time) {
	for _, n := range e.bgpStatus.Neighbors {
		if n.Name == tunnel && n.State == bgp.StateEstablished {
			return true, now.Add(-n.Uptime)
		}
	}
	return false, time.Time{}
}

// readBGP refreshes what the status shows of the speaker.
func (e *engine) readBGP() {
	if e.bgp == nil || !e.bgpSet || len(e.bgpApplied.Neighbors) == 0 {
		e.bgpStatus, e.bgpRoutes = bgp.Status{}, nil
		return
	}
	e.bgpStatus, e.bgpRoutes = e.bgp.Status(), e.bgp.Routes()
}

// learnedInto adds to want the learned prefixes of a BGP connection, each into the interface of the tunnel its
// best path came over, and returns the index of the tunnel that carries most of them (-1 for none). A learned
// prefix that overlaps a network configured on the appliance is not routed: the configuration wins, and the
// status says why.
func (e *engine) learnedInto(cp *connPlan, learned map[netip.Prefix]bgp.Route, want map[netip.Prefix]string) int {
	count := make([]int, len(cp.tunnels))
	for _, p := range slices.SortedFunc(maps.Keys(learned), comparePrefixes) {
		i := slices.IndexFunc(cp.tunnels, func(tp *tunnelPlan) bool { return tp.name == learned[p].Neighbor })
		if i < 0 {
			continue
		}
		if clash, ok := e.configuredOverlap(p); ok {
			e.bgpRejected = append(e.bgpRejected, p.String()+" overlaps configured network "+clash.String())
			continue
		}
		if _, static := want[p]; static {
			continue
		}
		want[p] = cp.tunnels[i].link.Name
		count[i]++
	}
	best := -1
	for i, n := range count {
		if n > 0 && (best < 0 || n > count[best]) {
			best = i
		}
	}
	return best
}

// configuredOverlap returns a local or static remote network of any connection that p overlaps.
func (e *engine) configuredOverlap(p netip.Prefix) (netip.Prefix, bool) {
	for _, cp := range e.plans {
		for _, n := range slices.Concat(cp.local, cp.remote) {
			if n.Overlaps(p) {
				return n, true
			}
		}
	}
	return netip.Prefix{}, false
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
