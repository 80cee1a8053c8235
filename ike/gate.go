package ike

import (
	"fmt"
	"net/netip"
	"slices"
)

// Policy-based mode on kernel-libipsec: charon routes every CHILD_SA into its TUN device, in its own routing
// table, including BGP's CHILD_SAs of 0.0.0.0/0 (render.go). The gate (dataplane/tablegate) lets into that table
// only what the tunnels are to carry; the CHILD_SAs' selectors, steered by their install order (steer.go), pick
// the tunnel.

// tableGate is the set of destinations let into charon's routing table. *tablegate.Gate implements it.
type tableGate interface {
	Set(want []netip.Prefix) error
	Close()
}

// applyGate lets through each connection's remote networks, the far inside addresses and probe targets of its
// tunnels, and the prefixes BGP learned (a learned prefix a configured network overlaps is refused, and the
// status says why, as in route-based mode).
func (e *engine) applyGate() {
	if e.gate == nil {
		return
	}
	set := map[netip.Prefix]bool{}
	for _, cp := range e.plans {
		for _, p := range cp.remote {
			set[p.Masked()] = true
		}
		for _, tp := range cp.tunnels {
			for _, a := range []netip.Addr{tp.remoteInside, tp.probeTarget} {
				if a.IsValid() {
					set[netip.PrefixFrom(a, a.BitLen())] = true
				}
			}
		}
	}
	if e.learned != nil {
		learned := e.learned.snapshot()
		e.bgpRejected = nil
		routed := map[netip.Prefix]string{}
		for _, cp := range e.plans {
			if cp.bgp != nil {
				e.learnedInto(cp, learned, routed)
			}
		}
		for p := range routed {
			set[p] = true
		}
	}
	want := make([]netip.Prefix, 0, len(set))
	for p := range set {
		want = append(want, p)
	}
	slices.SortFunc(want, comparePrefixes)
	if e.gateSet && slices.Equal(want, e.gateApplied) {
		return
	}
	if err := e.gate.Set(want); err != nil {
		e.log.Warn("letting the tunnels' destinations into charon's routing table failed", "err", err)
		e.setErr(fmt.Errorf("routing rules: %w", err))
		return
	}
	e.gateApplied, e.gateSet = want, true
}
