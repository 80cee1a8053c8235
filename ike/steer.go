package ike

import (
	"context"
	"time"

	"toride/ike/charon"
)

// Steering: the engine's side of failover.go. It tells which tunnel carries a connection's traffic, asks decide
// where it should go, and moves it there; on libipsec it also keeps one net lineage per tunnel.

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
		if cp.bgp != nil {
			// All the connection's traffic follows one tunnel's selectors here: a tunnel whose BGP session is
			// down has no learned route to carry, so it carries nothing; its hold-down counts from the session.
			up, since := e.bgpSession(now, tp.name)
			v.healthy = v.healthy && up
			if since.After(v.healthySince) {
				v.healthySince = since
			}
		}
		for _, n := range st.nets {
			v.netOrder = append(v.netOrder, e.lineages.order[n.UniqueID])
			v.netInstalled = append(v.netInstalled, n.InstallTime)
		}
		views[i] = v
	}
	cur := carrier(e.backend, views)
	if cur >= 0 && e.backend == charon.BackendLibipsec && !e.orderCertain(states, cur) {
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
	if e.backend == charon.BackendLibipsec {
		// Keep one net lineage per tunnel: delete older instances once a newer one is installed.
		for _, st := range states {
			if st == nil || len(st.nets) < 2 {
				continue
			}
			newest, _ := e.newestLineage(st)
			for _, n := range st.nets {
				if e.lineages.order[n.UniqueID] == newest || st.terminating[n.UniqueID] {
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
	if e.backend != charon.BackendLibipsec {
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
	tgt.promotedAt, tgt.promotedSeq = now, e.lineages.seq
	e.countMove(cs, cs.plan, cur, d)
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
		if !promoted && e.lineages.learnedAt[kc].Sub(e.lineages.learnedAt[k]) <= orderWindow {
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
	return e.lineages.order[st.nets[len(st.nets)-1].UniqueID], true
}
