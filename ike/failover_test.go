package ike

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"toride/ike/charon"
	"toride/ike/internal/icmpprobe"
	"toride/ike/internal/vici"
)

func TestCarrier(t *testing.T) {
	views := []tunnelView{
		{netOrder: []uint64{3}, netInstalled: []int64{100}},
		{netOrder: []uint64{7}, netInstalled: []int64{5}},
	}
	if got := carrier(charon.BackendLibipsec, views); got != 1 {
		t.Errorf("libipsec: the newest lineage carries; got %d", got)
	}
	if got := carrier(charon.BackendKernel, views); got != 0 {
		t.Errorf("kernel: the first installed carries; got %d", got)
	}
	if got := carrier(charon.BackendLibipsec, []tunnelView{{}, {}}); got != -1 {
		t.Errorf("no net CHILD_SA: got %d", got)
	}
}

func TestDecide(t *testing.T) {
	now := time.Now()
	up := func(since time.Duration) tunnelView { return tunnelView{healthy: true, healthySince: now.Add(-since)} }
	down := tunnelView{}
	const hold = 30 * time.Second
	tests := []struct {
		name      string
		movedAway bool
		views     []tunnelView
		current   int
		want      *decision
	}{
		{"steady on preferred", false, []tunnelView{up(time.Hour), up(time.Hour)}, 0, nil},
		{"initial: go to preferred at once", false, []tunnelView{up(time.Second), up(time.Hour)}, 1, &decision{target: 0}},
		{"preferred dies", false, []tunnelView{down, up(time.Hour)}, 0, &decision{target: 1, failover: true}},
		{"nothing carries yet, preferred down", false, []tunnelView{down, up(time.Second)}, -1, &decision{target: 1}},
		{"both down: stay", false, []tunnelView{down, down}, 0, nil},
		{"after failover: hold down", true, []tunnelView{up(10 * time.Second), up(time.Hour)}, 1, nil},
		{"after failover: fail back", true, []tunnelView{up(hold), up(time.Hour)}, 1, &decision{target: 0, failback: true}},
		{"recovering preferred grabbed traffic during hold-down", true, []tunnelView{up(time.Second), up(time.Hour)}, 0, &decision{target: 1}},
		{"backup dies during hold-down", true, []tunnelView{up(time.Second), down}, 1, &decision{target: 0, failover: true, failback: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(now, &steering{movedAway: tc.movedAway}, tc.views, tc.current, 0, hold)
			switch {
			case got == nil && tc.want == nil:
			case got == nil || tc.want == nil || *got != *tc.want:
				t.Errorf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The install order comes from the order of the child-updown events, not from charon's unique ids: a
// negotiation that started first (lower unique id) may install last, and then it carries the traffic.
func TestLineageFollowsEventOrder(t *testing.T) {
	e := &engine{engineDeps: engineDeps{now: time.Now}, lineages: newLineages(), tunnels: map[string]*tunnelState{
		"aws-t1": {plan: &tunnelPlan{name: "aws-t1", netChild: "aws-t1-net"}},
		"aws-t2": {plan: &tunnelPlan{name: "aws-t2", netChild: "aws-t2-net"}},
	}}
	up := func(tunnel string, id uint64) vici.Event {
		return vici.Event{Name: "child-updown", Up: true, SAs: []vici.IKESA{{Name: tunnel,
			ChildSAs: map[string]vici.ChildSA{tunnel + "-net": {Name: tunnel + "-net", UniqueID: id}}}}}
	}
	// Tunnel 1's CHILD_SA got unique id 2 but was installed first; tunnel 2's (id 1) second.
	e.onEvent(up("aws-t1", 2))
	e.onEvent(up("aws-t2", 1))
	views := []tunnelView{{netOrder: []uint64{e.lineages.order[2]}, netInstalled: []int64{0}}, {netOrder: []uint64{e.lineages.order[1]}, netInstalled: []int64{0}}}
	if got := carrier(charon.BackendLibipsec, views); got != 1 {
		t.Fatalf("carrier %d, want tunnel 2 (installed last); lineages %v", got, e.lineages.order)
	}
	// A rekey of tunnel 1's SA continues its lineage: it does not move the traffic.
	e.onEvent(vici.Event{Name: "child-rekey", Rekeys: []vici.ChildRekey{{IKE: "aws-t1", Old: vici.ChildSA{UniqueID: 2}, New: vici.ChildSA{UniqueID: 3}}}})
	if e.lineages.order[3] != e.lineages.order[2] || e.lineages.order[3] >= e.lineages.order[1] {
		t.Errorf("rekeyed SA lineage %d, want tunnel 1's %d (older than tunnel 2's %d)", e.lineages.order[3], e.lineages.order[2], e.lineages.order[1])
	}
	// A repeated event for a known SA keeps its place.
	before := e.lineages.order[1]
	e.onEvent(up("aws-t2", 1))
	if e.lineages.order[1] != before {
		t.Errorf("a repeated event moved tunnel 2's lineage from %d to %d", before, e.lineages.order[1])
	}
	// A fresh install on tunnel 1 (a steering move) makes it the newest.
	e.onEvent(up("aws-t1", 4))
	if e.lineages.order[4] <= e.lineages.order[1] {
		t.Errorf("fresh install %d not newer than %d", e.lineages.order[4], e.lineages.order[1])
	}
}

// A target that answered over a tunnel keeps counting after the tunnel's SA is replaced (rekey, steering move):
// losses on the new SA condemn the tunnel without waiting for a first answer over it. A forced restart makes
// the target earn it again.
func TestAnsweredOutlivesTheSA(t *testing.T) {
	e := &engine{engineDeps: engineDeps{log: slog.New(slog.DiscardHandler)}}
	st := &tunnelState{
		plan:      &tunnelPlan{name: "aws-t1", netChild: "aws-t1-net", probeChild: "aws-t1-net"},
		conn:      &connPlan{keepalive: probePlan{Interval: time.Second, DownAfter: 3}},
		tunnelSAs: tunnelSAs{ike: &vici.IKESA{State: "ESTABLISHED"}},
	}
	ctx, now := context.Background(), time.Now()
	st.lastRestart = now // no forced restart in this test: the engine has no charon to talk to
	sa := func(id uint64) {
		st.probe = &vici.ChildSA{UniqueID: id, State: "INSTALLED"}
		st.nets = []vici.ChildSA{*st.probe}
	}
	probe := func(ok bool) {
		st.proberGen = 1
		e.tunnels = map[string]*tunnelState{"aws-t1": st}
		e.onProbe(probeEvent{tunnel: "aws-t1", gen: 1, res: icmpprobe.Result{OK: ok}})
	}

	sa(1)
	e.judge(ctx, now, st)
	for range 3 {
		probe(false)
	}
	e.judge(ctx, now, st)
	if !st.healthy {
		t.Fatal("a tunnel whose target never answered was condemned by lost probes")
	}
	probe(true)
	sa(2) // rekeyed or moved: a new SA
	e.judge(ctx, now, st)
	if !st.healthy || st.lost != 0 {
		t.Fatalf("the new SA starts healthy with no losses: healthy %v lost %d", st.healthy, st.lost)
	}
	for range 3 {
		probe(false)
	}
	e.judge(ctx, now, st)
	if st.healthy {
		t.Error("three probes lost over the new SA of a tunnel whose target answered before: still healthy")
	}
}

// A promotion holds back the next one to the same tunnel only while its CHILD_SA has not been installed.
func TestPromotionDone(t *testing.T) {
	e := &engine{engineDeps: engineDeps{now: time.Now}, lineages: newLineages(), tunnels: map[string]*tunnelState{}}
	st := &tunnelState{plan: &tunnelPlan{name: "aws-t2", netChild: "aws-t2-net"}}
	e.tunnels["aws-t2"] = st
	e.lineages.fresh(10, time.Now())
	st.nets = []vici.ChildSA{{UniqueID: 10}}
	st.promotedSeq = e.lineages.seq // promotion issued
	if e.promotionDone(st) {
		t.Fatal("done before the new CHILD_SA was installed")
	}
	e.onEvent(vici.Event{Name: "child-updown", Up: true, SAs: []vici.IKESA{{Name: "aws-t2",
		ChildSAs: map[string]vici.ChildSA{"aws-t2-net": {Name: "aws-t2-net", UniqueID: 11}}}}})
	st.nets = append(st.nets, vici.ChildSA{UniqueID: 11})
	if !e.promotionDone(st) {
		t.Error("not done after the new CHILD_SA was installed")
	}
}

// Two fresh installs on different tunnels announced close together leave libipsec's order unknown (charon
// installs on several threads and announces afterwards); a promotion issued after both were known, or a second
// between them, makes it certain.
func TestOrderCertain(t *testing.T) {
	e := &engine{lineages: newLineages()}
	t1 := &tunnelState{}
	t2 := &tunnelState{}
	states := []*tunnelState{t1, t2}
	install := func(st *tunnelState, id uint64, at time.Time) {
		e.lineages.fresh(id, at)
		st.nets = append(st.nets, vici.ChildSA{UniqueID: id})
	}
	base := time.Now()
	install(t2, 1, base)
	install(t1, 2, base.Add(3*time.Millisecond))
	if e.orderCertain(states, 0) {
		t.Fatal("installs 3 ms apart called certain")
	}
	// The engine promotes tunnel 1 after knowing both: its fresh CHILD_SA is certainly the newest.
	t1.promotedSeq = e.lineages.seq
	install(t1, 3, base.Add(200*time.Millisecond))
	if !e.orderCertain(states, 0) {
		t.Error("a promoted install not called certain")
	}
	// Tunnel 2 re-established by itself two seconds later: certain by time alone.
	install(t2, 4, base.Add(2200*time.Millisecond))
	if !e.orderCertain(states, 1) {
		t.Error("installs 2 s apart not called certain")
	}
	if got := carrier(charon.BackendLibipsec, []tunnelView{{netOrder: []uint64{e.lineages.order[3]}}, {netOrder: []uint64{e.lineages.order[4]}}}); got != 1 {
		t.Errorf("carrier %d, want the newest (tunnel 2)", got)
	}
}
