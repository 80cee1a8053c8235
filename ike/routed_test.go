package ike

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"toride/dataplane/nft"
	"toride/dataplane/xfrm"
	"toride/ike/charon"
)

// Route-based mode against the in-memory charon and an in-memory kernel (fakeLinks): the carrier is whatever
// the routing table says, and the harness checks after every step that the status names exactly that tunnel.

// fakeLinks is the kernel's xfrm interfaces and tunnel routes in memory, as xfrm.Tunnels keeps them.
type fakeLinks struct {
	ifaces    []xfrm.Interface
	routes    map[netip.Prefix]string
	created   int // interfaces made, over the whole test: a re-created one counts again
	routeSets int
	failRoute error // SetRoutes fails with it
	stats     []xfrm.SAStats
	stale     []time.Time // the cut of every RemoveStale
	closed    bool
}

func (l *fakeLinks) Set(want []xfrm.Interface) error {
	for _, w := range want {
		if !slices.Contains(l.ifaces, w) {
			l.created++
		}
	}
	l.ifaces = slices.Clone(want)
	return nil
}

func (l *fakeLinks) SetRoutes(want map[netip.Prefix]string) error {
	if l.failRoute != nil {
		return l.failRoute
	}
	for _, ifname := range want {
		if !slices.ContainsFunc(l.ifaces, func(i xfrm.Interface) bool { return i.Name == ifname }) {
			return errors.New("route into " + ifname + ": no such tunnel interface")
		}
	}
	l.routeSets++
	l.routes = maps.Clone(want)
	return nil
}

func (l *fakeLinks) Routes() (map[netip.Prefix]string, error) { return maps.Clone(l.routes), nil }
func (l *fakeLinks) Close()                                   { l.closed = true }
func (l *fakeLinks) Stats() ([]xfrm.SAStats, error)           { return l.stats, nil }
func (l *fakeLinks) RemoveStale(_ []uint32, _ map[uint32]bool, before time.Time) (int, error) {
	l.stale = append(l.stale, before)
	return 0, nil
}
func (l *fakeLinks) Watch(ctx context.Context, _ func(xfrm.Event)) error {
	<-ctx.Done()
	return nil
}

// carrier is the index of the tunnel the routes lead into, or -1.
func (l *fakeLinks) carrier(tunnels []TunnelStatus) int {
	for _, ifname := range l.routes {
		for i, ts := range tunnels {
			if ts.Interface == ifname {
				return i
			}
		}
	}
	return -1
}

var lanRoute = netip.MustParsePrefix("10.2.0.0/16")

func newRouteHarness(t *testing.T) *harness {
	h := &harness{t: t, ctx: t.Context(), now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
		addrs: &fakeAddrs{}, fw: &fakeFirewall{}, backend: charon.BackendKernel, links: &fakeLinks{}}
	h.f = newFakeCharon(h.clock)
	h.f.kernel = true
	h.startEngine()
	return h
}

// routedUp brings both tunnels up and has both probe targets answer.
func (h *harness) routedUp() {
	h.t.Helper()
	h.set(testConfig())
	h.complete()
	h.wantStates("up", "up")
	h.probe(t1, true)
	h.probe(t2, true)
	h.wantActive(0)
}

func (h *harness) wantRoute(tunnel string) {
	h.t.Helper()
	if got := h.links.routes[lanRoute]; got != tunnel {
		h.t.Fatalf("%s is routed into %q, want %q", lanRoute, got, tunnel)
	}
}

func TestRouteBasedBringUp(t *testing.T) {
	h := newRouteHarness(t)
	mark := h.mark()
	h.set(testConfig())
	if st := h.s.Status(); st.Mode != ModeRouteBased {
		t.Fatalf("mode %q", st.Mode)
	}
	// One CHILD_SA per tunnel, 0/0 both ways, bound to the tunnel's interface by its if_id: IKEv1 or IKEv2.
	h.wantCalls(mark, "initiate", "initiate "+t1net, "initiate "+t2net)
	var ids []uint32
	for i, name := range []string{t1, t2} {
		conn := h.f.conns[name]
		if len(conn.Children) != 1 {
			t.Fatalf("%s has %d children, want 1", name, len(conn.Children))
		}
		ch := conn.Children[name+"-net"]
		if !slices.Equal(ch.LocalTS, []string{"0.0.0.0/0"}) || !slices.Equal(ch.RemoteTS, []string{"0.0.0.0/0"}) {
			t.Errorf("%s selectors %v ↔ %v, want 0.0.0.0/0 both ways", name, ch.LocalTS, ch.RemoteTS)
		}
		if ch.MarkIn != "" || ch.MarkOut != "" {
			t.Errorf("%s has marks %q/%q", name, ch.MarkIn, ch.MarkOut)
		}
		ifc := h.links.ifaces[i]
		if ch.IfIDIn != ch.IfIDOut || ch.IfIDIn != itoa(uint64(ifc.IfID)) {
			t.Errorf("%s if_id in/out %s/%s, its interface's %d", name, ch.IfIDIn, ch.IfIDOut, ifc.IfID)
		}
		ids = append(ids, ifc.IfID)
	}
	if ids[0] == ids[1] {
		t.Errorf("both tunnels have if_id %d", ids[0])
	}
	want := []xfrm.Interface{
		{Name: t1, IfID: ids[0], MTU: DefaultTunnelMTU, Address: netip.MustParsePrefix("169.254.10.2/30")},
		{Name: t2, IfID: ids[1], MTU: DefaultTunnelMTU, Address: netip.MustParsePrefix("169.254.11.2/30")},
	}
	if diff := cmp.Diff(h.links.ifaces, want, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("interfaces (-got +want):\n%s", diff)
	}
	if len(h.addrs.have) != 0 {
		t.Errorf("inside addresses on the loopback in route-based mode: %v", h.addrs.have)
	}
	wantClamps := []nft.Clamp{{Interface: t1, MSS: DefaultTCPMSS}, {Interface: t2, MSS: DefaultTCPMSS}}
	if diff := cmp.Diff(h.fw.clamps, wantClamps); diff != "" {
		t.Errorf("MSS clamps (-got +want):\n%s", diff)
	}
	// Routed into the preferred tunnel before anything is up: the remote networks never take another route.
	h.wantStates("down", "down")
	h.wantRoute(t1)
	h.wantActive(0)

	h.complete()
	h.wantStates("up", "up")
	h.probe(t1, true)
	h.probe(t2, true)
	h.wantRoute(t1)
	// Nothing to promote or terminate: the route decides.
	h.wantCalls(mark, "terminate")
	h.wantCalls(mark, "initiate", "initiate "+t1net, "initiate "+t2net)
	for _, ts := range h.conn().Tunnels {
		if ts.Interface != ts.Name {
			t.Errorf("tunnel %s: interface %q", ts.Name, ts.Interface)
		}
	}

	// Idempotent: the same configuration again changes nothing in charon or the kernel.
	mark, created, sets := h.mark(), h.links.created, h.links.routeSets
	h.set(testConfig())
	h.wantCalls(mark, "")
	if h.links.created != created || h.links.routeSets != sets {
		t.Errorf("the same configuration again made %d interfaces and set the routes %d times",
			h.links.created-created, h.links.routeSets-sets)
	}
}

// The carrier's probes go unanswered: the route moves to the other tunnel, and back after the hold-down once
// the preferred tunnel is healthy again. Neither move asks anything of charon.
func TestRouteBasedFailoverAndFailback(t *testing.T) {
	h := newRouteHarness(t)
	h.routedUp()
	h.advance(10 * time.Second)
	mark := h.mark()
	for range 3 {
		h.advance(time.Second)
		h.probe(t1, false)
	}
	h.wantStates("down", "up")
	h.wantRoute(t2)
	h.wantActive(1)
	h.wantCalls(mark, "initiate "+t2net) // the target is not touched (tunnel 1 itself is restarted: its data path is dead)
	if c := h.conn(); c.Failovers != 1 || c.Tunnels[0].Failovers != 1 {
		t.Errorf("failovers: connection %d, tunnel 1 %d; want 1 and 1", c.Failovers, c.Tunnels[0].Failovers)
	}
	// Tunnel 1 comes back and answers again: it waits out the hold-down on tunnel 2.
	h.complete()
	h.probe(t1, true)
	h.wantStates("up", "up")
	h.wantRoute(t2)
	h.advance(time.Second)
	h.probe(t1, true)
	h.wantRoute(t2)
	h.advance(2 * time.Second)
	h.probe(t1, true)
	h.wantRoute(t1)
	if c := h.conn(); c.Failbacks != 1 {
		t.Errorf("%d failbacks, want 1", c.Failbacks)
	}
	h.wantCalls(mark, "terminate-child")
}

// The routing table is the truth: a route someone else moved (or a failed SetRoutes) is what the status shows,
// and the engine puts the route back where it belongs.
func TestRouteBasedStatusFollowsTheKernel(t *testing.T) {
	h := newRouteHarness(t)
	h.routedUp()
	h.links.routes[lanRoute] = t2 // moved behind the engine's back
	h.links.failRoute = errors.New("netlink: operation not permitted")
	h.tick()
	h.wantActive(1)
	if st := h.s.Status(); !strings.Contains(st.LastError, "operation not permitted") {
		t.Errorf("last error %q", st.LastError)
	}
	h.links.failRoute = nil
	h.tick()
	h.wantRoute(t1)
	h.wantActive(0)
}

// charon restarts: the interfaces, their if_ids and the routes stay as they are; the tunnels are loaded and
// initiated again.
func TestRouteBasedCharonRestart(t *testing.T) {
	h := newRouteHarness(t)
	h.routedUp()
	created, ifaces := h.links.created, slices.Clone(h.links.ifaces)
	mark := h.mark()
	h.advance(time.Second)
	h.f.start()
	h.settle()
	stale := len(h.links.stale)
	h.wantCalls(mark, "initiate", "initiate "+t1net, "initiate "+t2net)
	h.wantRoute(t1)
	h.complete()
	h.wantStates("up", "up")
	// The dead charon's SAs go once the new ones are in (not before: its policies would turn traffic into
	// acquires), one removal per tunnel, up to the new charon's start.
	if stale != 2 {
		t.Errorf("%d removals before the new SAs were installed", stale-2)
	}
	if got := h.links.stale[2:]; len(got) != 2 || !got[0].Equal(h.f.health.Since) || !got[1].Equal(h.f.health.Since) {
		t.Errorf("the dead charon's SAs were not removed up to the new charon's start (%v): %v", h.f.health.Since, got)
	}
	if h.links.created != created || !slices.Equal(h.links.ifaces, ifaces) {
		t.Errorf("a charon restart re-created interfaces: %v, was %v", h.links.ifaces, ifaces)
	}
	h.wantRoute(t1)
}

// Closing the service takes the routes, the interfaces and the clamps away.
func TestRouteBasedShutdown(t *testing.T) {
	h := newRouteHarness(t)
	h.routedUp()
	h.e.shutdown()
	if len(h.links.routes) != 0 || len(h.links.ifaces) != 0 || !h.links.closed {
		t.Errorf("after shutdown: routes %v, interfaces %v, closed %v", h.links.routes, h.links.ifaces, h.links.closed)
	}
	if len(h.fw.clamps) != 0 {
		t.Errorf("clamps left: %v", h.fw.clamps)
	}
}

// IKEv1 gets the same single CHILD_SA: the probes need no SA of their own when the selectors are 0/0.
func TestRouteBasedPlanIKEv1(t *testing.T) {
	cfg := testConfig()
	for _, tn := range cfg.Connections["aws-tokyo"].Tunnels {
		tn.IKEVersion = 1
	}
	for _, tp := range plan(cfg.Normalize(), charon.BackendKernel, ModeRouteBased)[0].tunnels {
		if len(tp.ikeConn.Children) != 1 || tp.probeChild != tp.netChild {
			t.Errorf("%s: %d children, probe %q net %q", tp.name, len(tp.ikeConn.Children), tp.probeChild, tp.netChild)
		}
	}
}

// A tunnel keeps its if_id whatever other tunnels exist, and a name too long for Linux becomes one of its if_id.
func TestRouteBasedIfIDsAndNames(t *testing.T) {
	a := ifIDs{}.take("aws-tokyo-t1")
	ids := ifIDs{}
	ids.take("other-t1")
	if b := ids.take("aws-tokyo-t1"); b != a || a == 0 {
		t.Errorf("if_id %d alone, %d beside another tunnel", a, b)
	}
	taken := ifIDs{a: true}
	if c := taken.take("aws-tokyo-t1"); c == a || c == 0 {
		t.Errorf("a collision kept if_id %d", c)
	}
	if n := linkName("vpn-0123456789abcdef0-t1", 0x1234); n != "xfrm-00001234" {
		t.Errorf("long name → %q", n)
	}
	if n := linkName("aws-t1", 7); n != "aws-t1" {
		t.Errorf("short name → %q", n)
	}
}

// The kernel's counters reach the status per tunnel (by if_id), and a hard expiry on a tunnel's interface makes
// the engine look at charon at once; one on an SA that is not a tunnel's, or a soft expiry, does not.
func TestRouteBasedKernelCountersAndEvents(t *testing.T) {
	h := newRouteHarness(t)
	h.routedUp()
	id1, id2 := h.links.ifaces[0].IfID, h.links.ifaces[1].IfID
	h.links.stats = []xfrm.SAStats{
		{IfID: id1, SPI: 1, ReplayDrops: 3, IntegrityFailures: 1},
		{IfID: id1, SPI: 2, ReplayDrops: 2},
		{IfID: id2, SPI: 3, IntegrityFailures: 7},
		{IfID: 0, SPI: 4, ReplayDrops: 100}, // someone else's policy-based SA
	}
	h.tick()
	c := h.conn()
	if got := [4]uint64{c.Tunnels[0].ReplayDrops, c.Tunnels[0].IntegrityFailures, c.Tunnels[1].ReplayDrops,
		c.Tunnels[1].IntegrityFailures}; got != [4]uint64{5, 1, 0, 7} {
		t.Errorf("replay drops and integrity failures per tunnel %v, want [5 1 0 7]", got)
	}
	// Tunnel 2's SAs vanish without a word from charon; only the kernel's announcement tells.
	sa := h.f.ikeByName(t2)
	h.f.ikes = slices.DeleteFunc(h.f.ikes, func(s *fakeIKE) bool { return s == sa })
	for _, ev := range []xfrm.Event{{Kind: xfrm.SoftExpired, IfID: id2}, {Kind: xfrm.Expired, IfID: 12345}} {
		h.e.kernelEvent(h.ctx, ev)
		h.settle()
		h.wantStates("up", "up")
	}
	h.e.kernelEvent(h.ctx, xfrm.Event{Kind: xfrm.Expired, IfID: id2, SPI: 3})
	h.settle()
	h.wantStates("up", "down")
	if n := h.conn().Tunnels[1].KernelEvents; n != 1 {
		t.Errorf("tunnel 2 counted %d kernel events, want 1", n)
	}
}
