package ike

import (
	"time"

	"toride/ike/charon"
)

// Traffic steering between the two tunnels of a connection.
//
// Both tunnels negotiate the same traffic selectors (local networks ↔ remote networks) in their "net" CHILD_SA,
// so both accept traffic from the cloud at any time (the cloud may route asymmetrically). Outbound, only one of
// them can carry a given packet; which one depends on the backend:
//
//   - kernel-libipsec keeps one policy list, sorted by selector size, and among equal selectors the most recently
//     installed policy wins. A rekey does not reorder: the new SA keeps its reqid and the old SA's removal takes
//     the new entry away again. The net child is therefore rendered with mark_in/mark_out = %unique, which gives
//     every fresh CHILD_SA instance its own reqid and its own policy entries. The engine follows the order of
//     fresh installs (child-updown events; child-rekey events continue a lineage; list-sas as a fallback): the
//     tunnel with the most recently installed lineage carries the traffic. To move traffic to tunnel X the engine
//     installs a fresh net child on X and deletes X's older instances: with IKEv2 it initiates the new one first
//     (make before break); with IKEv1 it deletes first, because charon treats a second identical quick mode as a
//     rekey of the first (same reqid, same place). This works without waiting for DPD, as long as X's peer
//     answers. Neither reqids (charon reuses released ones) nor unique ids (handed out when a negotiation
//     starts, not when it installs) say anything about the order; the order of the events does, except for
//     installs milliseconds apart (see orderCertain), which the engine resolves by promoting a tunnel.
//   - kernel-netlink (kernel ESP) installs one XFRM policy per selector pair and keeps it pointing at the first
//     SA that installed it. Where the kernel has xfrm interfaces the engine does not use this mode at all (see
//     routed.go: the routing table steers); on a kernel with ESP but without them it can only evict: when the carrying tunnel is unhealthy its IKE_SA is torn down (forced), which hands the policy to the
//     other tunnel's SA. There is no controlled fail-back on this backend; %unique marks are not used because
//     kernel policies would then require marked packets.
//
// Each tunnel also has a "probe" CHILD_SA whose selectors are the tunnel's own inside addresses (/32 each), so
// the keepalive probes of each tunnel always use that tunnel, whichever one carries the LAN traffic.

// tunnelView is what steering needs to know about one tunnel.
type tunnelView struct {
	healthy      bool
	healthySince time.Time
	// netOrder holds, for each installed net CHILD_SA, the install order of its lineage (a fresh install starts
	// a lineage, a rekey continues it): on libipsec the lineage installed last carries the traffic. netInstalled holds their install times (seconds ago), same order.
	netOrder     []uint64
	netInstalled []int64
}

// steering is a connection's steering state, kept by the engine between evaluations.
type steering struct {
	// movedAway is true after a failover moved traffic off the preferred tunnel; fail-back then waits for the
	// hold-down. Before any failover (initial convergence) traffic goes to the preferred tunnel as soon as it is
	// healthy.
	movedAway bool
}

// carrier returns the index of the tunnel carrying outbound traffic on backend, or -1.
func carrier(backend charon.Backend, views []tunnelView) int {
	best, idx := uint64(0), -1
	var oldest int64 = -1
	for i, v := range views {
		for j, o := range v.netOrder {
			if backend == charon.BackendLibipsec {
				if idx < 0 || o > best {
					best, idx = o, i
				}
			} else if v.netInstalled[j] > oldest {
				oldest, idx = v.netInstalled[j], i
			}
		}
	}
	return idx
}

// decision is a steering action: make target the carrier.
type decision struct {
	target   int
	failover bool // the carrier was unhealthy
	failback bool // back to the preferred tunnel after the hold-down
}

// decide chooses where traffic should go, or returns nil when the carrier should stay. The preferred tunnel gets
// the traffic whenever it is healthy, except after a failover, when it must first stay healthy for holdDown
// (meanwhile traffic is kept on, or moved back to, another healthy tunnel: a recovering tunnel's fresh CHILD_SA
// can take the traffic by itself on libipsec).
func decide(now time.Time, st *steering, views []tunnelView, current, preferred int, holdDown time.Duration) *decision {
	healthy := func(i int) bool { return i >= 0 && i < len(views) && views[i].healthy }
	target := current
	switch {
	case healthy(preferred) && (!st.movedAway || now.Sub(views[preferred].healthySince) >= holdDown):
		target = preferred
	case healthy(current) && current != preferred:
		target = current
	default:
		for i := range views {
			if i != preferred && healthy(i) {
				target = i
				break
			}
		}
		if !healthy(target) && healthy(preferred) {
			target = preferred // the only healthy one, hold-down or not
		}
	}
	if target == current || !healthy(target) {
		return nil
	}
	return &decision{
		target:   target,
		failover: current >= 0 && !healthy(current),
		failback: target == preferred && st.movedAway,
	}
}
