package ike

import (
	"cmp"
	"context"
	"slices"

	"toride/ike/internal/vici"
)

// Observing charon: its events give the install order of net CHILD_SAs, and list-sas (after every burst of
// events, and every ResyncInterval) gives every tunnel's SAs. govici drops events a subscriber does not take in
// time, so nothing depends on an event arriving: list-sas finds what the events missed.

// tunnelSAs is a tunnel's SAs as the last list-sas showed them.
type tunnelSAs struct {
	ike    *vici.IKESA // the most advanced of the tunnel's IKE_SAs (see ikeRank)
	ikeIDs []uint64    // unique ids of all of them
	probe  *vici.ChildSA
	nets   []vici.ChildSA // the installed net CHILD_SAs, oldest lineage first
}

// received handles what the event stream delivered: an event (and, to coalesce a burst into one resync, those
// queued behind it), or the end of the session (ok false).
func (e *engine) received(ctx context.Context, ev vici.Event, ok bool) {
	if !ok {
		e.log.Warn("VICI event session ended")
		e.disconnect()
		return
	}
	e.onEvent(ev)
	e.drainEvents()
	e.resync(ctx)
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
				if _, known := e.lineages.order[ch.UniqueID]; !known && ch.Name == st.plan.netChild {
					e.lineages.fresh(ch.UniqueID, e.now())
				}
			}
		}
	case "child-rekey":
		for _, r := range ev.Rekeys {
			e.lineages.rekeyed(r.Old.UniqueID, r.New.UniqueID, e.now())
		}
	}
}

// resync lists SAs and updates every tunnel's view, then evaluates.
func (e *engine) resync(ctx context.Context) {
	if e.client == nil {
		return
	}
	listed := e.lineages.known() // lineages known when the list was taken
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
	if e.links != nil {
		e.readKernelCounters()
		e.readBGP()
	}
	var missed []missedNet
	for name, st := range e.tunnels {
		prev := st.nets
		st.tunnelSAs = tunnelSAs{}
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
			if _, ok := e.lineages.order[n.UniqueID]; ok {
				continue
			}
			// Missed the event: a CHILD_SA with the reqid of one we saw before is its rekeyed successor;
			// anything else is a fresh install, ordered below.
			successor := false
			for _, p := range prev {
				if l, ok := e.lineages.order[p.UniqueID]; ok && p.ReqID == n.ReqID {
					e.lineages.order[n.UniqueID], successor = l, true
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
	now := e.now()
	for _, m := range missed {
		e.lineages.fresh(m.uniqueID, now)
	}
	for _, st := range e.tunnels {
		slices.SortFunc(st.nets, func(a, b vici.ChildSA) int {
			return cmp.Or(cmp.Compare(e.lineages.order[a.UniqueID], e.lineages.order[b.UniqueID]), cmp.Compare(a.UniqueID, b.UniqueID))
		})
		for id := range st.terminating {
			if !slices.ContainsFunc(st.nets, func(c vici.ChildSA) bool { return c.UniqueID == id }) {
				delete(st.terminating, id)
			}
		}
	}
	e.lineages.prune(listed, present)
	e.evaluate(ctx)
}

// missedNet is a net CHILD_SA first seen by a resync, not by its event.
type missedNet struct {
	uniqueID     uint64
	installedAgo int64
}

// ikeRank orders the states of a tunnel's IKE_SAs: the one it has is the most advanced.
func ikeRank(sa *vici.IKESA) int {
	switch sa.State {
	case "ESTABLISHED":
		return 3
	case "CONNECTING", "REKEYING", "REKEYED":
		return 2
	}
	return 1
}
