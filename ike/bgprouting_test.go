package ike

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"toride/ike/bgp"
	"toride/ike/charon"
)

// fakeSpeaker records what the engine gives the BGP speaker; the test plays its sink.
type fakeSpeaker struct {
	configs []bgp.Config
	status  bgp.Status
	closed  bool
}

func (s *fakeSpeaker) Set(_ context.Context, c bgp.Config) error {
	s.configs = append(s.configs, c)
	return nil
}
func (s *fakeSpeaker) Status() bgp.Status         { return s.status }
func (s *fakeSpeaker) Routes() []bgp.LearnedRoute { return nil }
func (s *fakeSpeaker) Close() error               { s.closed = true; return nil }

func (s *fakeSpeaker) last(t *testing.T) bgp.Config {
	t.Helper()
	if len(s.configs) == 0 {
		t.Fatal("the speaker was never configured")
	}
	return s.configs[len(s.configs)-1]
}

func bgpConfig() Config {
	cfg := testConfig()
	c := cfg.Connections["aws-tokyo"]
	c.Routing, c.RemoteNetworks = RoutingBGP, nil
	c.BGP = BGP{LocalASN: 65000, Password: "md5-key"}
	return cfg
}

var cloudNet = netip.MustParsePrefix("10.2.0.0/16")

// learn plays the speaker's sink: the best path of prefix is now over tunnel (or gone, with "").
func (h *harness) learn(prefix netip.Prefix, tunnel string) {
	h.t.Helper()
	if tunnel == "" {
		h.learned.Withdraw(h.ctx, prefix)
	} else {
		h.learned.Install(h.ctx, bgp.Route{Prefix: prefix, Neighbor: tunnel})
	}
	h.tick()
}

func TestBGPSessionsAndLearnedRoutes(t *testing.T) {
	h := newRouteHarness(t)
	h.set(bgpConfig())
	h.complete()
	h.probe(t1, true)
	h.probe(t2, true)
	want := bgp.Config{
		LocalASN: 65000,
		Neighbors: []bgp.Neighbor{
			{Name: t1, LocalAddress: netip.MustParseAddr("169.254.10.2"), PeerAddress: netip.MustParseAddr("169.254.10.1"),
				PeerASN: DefaultRemoteASN, HoldTime: DefaultBGPHoldTime, LocalPreference: DefaultPreferredLocalPreference, Password: "md5-key"},
			{Name: t2, LocalAddress: netip.MustParseAddr("169.254.11.2"), PeerAddress: netip.MustParseAddr("169.254.11.1"),
				PeerASN: DefaultRemoteASN, HoldTime: DefaultBGPHoldTime, LocalPreference: DefaultLocalPreference, Password: "md5-key"},
		},
		Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
	}
	if diff := cmp.Diff(h.speaker.last(t), want, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Fatalf("speaker configuration (-got +want):\n%s", diff)
	}
	// Nothing learned: nothing routed, no tunnel active.
	if len(h.links.routes) != 0 {
		t.Fatalf("routes before anything was learned: %v", h.links.routes)
	}
	h.wantActive(-1)

	h.learn(cloudNet, t1)
	h.wantRoute(t1)
	h.wantActive(0)
	// The best path moves to the other session: so does the route.
	h.learn(cloudNet, t2)
	h.wantRoute(t2)
	h.wantActive(1)
	h.learn(cloudNet, "")
	if len(h.links.routes) != 0 {
		t.Fatalf("a withdrawn prefix is still routed: %v", h.links.routes)
	}
	h.wantActive(-1)

	// Set is idempotent for the speaker too.
	n := len(h.speaker.configs)
	h.set(bgpConfig())
	if len(h.speaker.configs) != n {
		t.Errorf("the same configuration again reconfigured the speaker")
	}
	h.e.shutdown()
	if !h.speaker.closed {
		t.Error("shutdown left the speaker running")
	}
}

// A tunnel whose probes die while its BGP session lingers gets the lowest local preference, so the cloud's
// prefixes move to the other tunnel's session; it gets its own back once it is healthy again.
func TestBGPDeprefersATunnelThatCarriesNothing(t *testing.T) {
	h := newRouteHarness(t)
	h.set(bgpConfig())
	h.complete()
	h.probe(t1, true)
	h.probe(t2, true)
	pref := func() []uint32 {
		var out []uint32
		for _, n := range h.speaker.last(t).Neighbors {
			out = append(out, n.LocalPreference)
		}
		return out
	}
	if got := pref(); !slices.Equal(got, []uint32{200, 100}) {
		t.Fatalf("local preferences %v, want [200 100]", got)
	}
	h.advance(10 * time.Second)
	for range 3 {
		h.advance(time.Second)
		h.probe(t1, false)
	}
	if got := pref(); !slices.Equal(got, []uint32{unhealthyLocalPreference, 100}) {
		t.Fatalf("local preferences with tunnel 1 dead %v, want [%d 100]", got, unhealthyLocalPreference)
	}
	h.complete() // tunnel 1 restarted
	h.probe(t1, true)
	if got := pref(); !slices.Equal(got, []uint32{200, 100}) {
		t.Fatalf("local preferences after recovery %v, want [200 100]", got)
	}
}

// A learned prefix that overlaps a network of the configuration is not routed, and the status says why.
func TestBGPLearnedOverlapIsRefused(t *testing.T) {
	h := newRouteHarness(t)
	h.set(bgpConfig())
	h.complete()
	h.learn(netip.MustParsePrefix("10.1.2.0/24"), t1) // inside the local 10.1.0.0/16
	if len(h.links.routes) != 0 {
		t.Fatalf("an overlapping learned prefix was routed: %v", h.links.routes)
	}
	probs := h.s.Status().BGPProblems
	if len(probs) != 1 || !strings.Contains(probs[0], "10.1.2.0/24 overlaps configured network 10.1.0.0/16") {
		t.Errorf("status problems %q", probs)
	}
	if ts := h.conn().Tunnels[0].BGP; ts == nil || ts.LocalPreference != 200 {
		t.Errorf("tunnel 1's BGP status %+v", ts)
	}
}

// The appliance speaks BGP as one AS: two BGP connections with different local ASNs are refused with the fix.
func TestValidateOneLocalASN(t *testing.T) {
	cfg := bgpConfig()
	other := bgpConfig().Connections["aws-tokyo"]
	other.BGP.LocalASN = 65001
	secondCloudEndpoints(other)
	cfg.Connections["aws-osaka"] = other
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "connections.aws-tokyo.bgp.local-asn") || !strings.Contains(err.Error(), "use 65001 here too") {
		t.Fatalf("Validate = %v", err)
	}
}

// With kernel ESP but no xfrm interfaces there is no BGP speaker: the status says so instead of showing nothing.
func TestBGPWithoutXFRMInterfacesSaysItDoesNotRun(t *testing.T) {
	h := newHarnessOn(t, charon.BackendKernel)
	h.set(bgpConfig())
	probs := h.s.Status().BGPProblems
	if len(probs) != 1 || !strings.Contains(probs[0], "BGP needs xfrm interfaces") {
		t.Errorf("status problems %q", probs)
	}
}

// fakeGate records what the engine lets into charon's routing table.
type fakeGate struct{ want []netip.Prefix }

func (g *fakeGate) Set(want []netip.Prefix) error { g.want = slices.Clone(want); return nil }
func (g *fakeGate) Close()                        {}

func (h *harness) wantGate(want ...string) {
	h.t.Helper()
	var got []string
	for _, p := range h.gate.want {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		h.t.Fatalf("let into charon's table: %v, want %v", got, want)
	}
}

// established makes the fake speaker's sessions over the given tunnels established, the others idle.
func (h *harness) established(tunnels ...string) {
	h.speaker.status = bgp.Status{}
	for _, n := range []string{t1, t2} {
		st := bgp.StateIdle
		if slices.Contains(tunnels, n) {
			st = bgp.StateEstablished
		}
		h.speaker.status.Neighbors = append(h.speaker.status.Neighbors, bgp.NeighborStatus{Name: n, State: st})
	}
}

// On kernel-libipsec (policy-based) BGP runs too: each tunnel's CHILD_SA selects everything on the cloud's side,
// as the cloud's own does; the gate lets into charon's table only the far inside addresses and what was learned;
// the connection's traffic follows a tunnel whose session is established, the preferred one first.
func TestBGPOnKernelLibipsec(t *testing.T) {
	h := newHarness(t)
	h.set(bgpConfig())
	net := h.f.conns[t1].Children[t1+"-net"]
	if !slices.Equal(net.RemoteTS, []string{"0.0.0.0/0"}) || !slices.Equal(net.LocalTS, []string{"10.1.0.0/16", "169.254.10.2/32"}) {
		t.Fatalf("tunnel 1's CHILD_SA selects %v === %v", net.LocalTS, net.RemoteTS)
	}
	h.complete()
	h.probe(t1, true)
	h.probe(t2, true)
	if n := len(h.speaker.last(t).Neighbors); n != 2 {
		t.Fatalf("the speaker has %d neighbors, want one per tunnel", n)
	}
	h.wantGate("169.254.10.1/32", "169.254.11.1/32")

	h.established(t1, t2)
	h.learn(cloudNet, t1)
	h.wantGate("10.2.0.0/16", "169.254.10.1/32", "169.254.11.1/32")
	h.complete() // steering re-installs the carrier's CHILD_SA, so that libipsec puts it first
	h.wantActive(0)
	// Tunnel 1's session ends: its best paths go to tunnel 2's, and so does the traffic, at once.
	h.established(t2)
	h.learn(cloudNet, t2)
	h.complete()
	h.wantActive(1)
	if ts := h.conn().Tunnels[0].BGP; ts == nil || ts.State != bgp.StateIdle {
		t.Errorf("tunnel 1's BGP status %+v", ts)
	}
	// Nothing learned any more: only the sessions' own addresses go into the tunnels.
	h.learn(cloudNet, "")
	h.wantGate("169.254.10.1/32", "169.254.11.1/32")
	h.e.shutdown()
	if !h.speaker.closed {
		t.Error("shutdown left the speaker running")
	}
}

// The TCP MD5 key is a secret (never printed) and at most 80 characters, as the kernel takes it.
func TestBGPPassword(t *testing.T) {
	cfg := bgpConfig()
	cfg.Connections["aws-tokyo"].BGP.Password = PSK(strings.Repeat("k", 81))
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "connections.aws-tokyo.bgp.password = (secret)") || strings.Contains(err.Error(), "kkkk") {
		t.Fatalf("Validate = %v", err)
	}
	if s := fmt.Sprintf("%v %+v", cfg.Connections["aws-tokyo"].BGP, cfg.Connections["aws-tokyo"].BGP); strings.Contains(s, "kkkk") {
		t.Fatalf("the key is printed: %s", s)
	}
}

// A cloud network is reached over one connection: two connections routing overlapping remote networks are refused.
func TestValidateRemoteNetworksOfTwoConnections(t *testing.T) {
	cfg := testConfig()
	other := testConfig().Connections["aws-tokyo"]
	other.RemoteNetworks = []netip.Prefix{netip.MustParsePrefix("10.2.5.0/24")}
	secondCloudEndpoints(other)
	cfg.Connections["aws-osaka"] = other
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "connections.aws-tokyo.remote-network = 10.2.0.0/16: overlaps remote network 10.2.5.0/24 of connection aws-osaka") {
		t.Fatalf("Validate = %v", err)
	}
	other.RemoteNetworks = []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16")}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("disjoint remote networks: %v", err)
	}
}

// secondCloudEndpoints gives a copy of the test connection its own cloud endpoints and inside /30s, so that it
// can stand beside the first.
func secondCloudEndpoints(c *Connection) {
	c.Tunnels["tunnel1"].RemoteAddress = netip.MustParseAddr("203.0.113.30")
	c.Tunnels["tunnel1"].InsideCIDR = netip.MustParsePrefix("169.254.20.0/30")
	c.Tunnels["tunnel2"].RemoteAddress = netip.MustParseAddr("203.0.113.40")
	c.Tunnels["tunnel2"].InsideCIDR = netip.MustParsePrefix("169.254.21.0/30")
}
