package bgp_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"toride/ike/bgp"
	"toride/ike/bgp/bgptest"
)

// The loopback stand-ins for two tunnels' inside addresses: ours .1 and .3, the cloud's .2 and .4.
var (
	our1, cloud1 = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	our2, cloud2 = netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")
	cloudNet     = netip.MustParsePrefix("10.2.0.0/16")
	localNet     = netip.MustParsePrefix("10.1.0.0/24")
)

const (
	ourASN   = 65000
	cloudASN = 64512
)

var netipEqual = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// freePort picks a free TCP port below Linux's ephemeral range (32768–60999), where no outgoing connection of
// another process on the machine can take it between the check and gobgp's bind.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free TCP port in 20000–31999")
	return 0
}

// cloud is a gobgp of its own standing for the cloud's two gateways: one session per tunnel, announcing
// cloudNet on both.
type cloud struct {
	srv *server.BgpServer
}

func startCloud(t *testing.T, listenPort, ourPort int) *cloud {
	t.Helper()
	srv := server.NewBgpServer()
	go srv.Serve()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cloudASN, RouterId: cloud1.String(), ListenPort: int32(listenPort), ListenAddresses: []string{"127.0.0.1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]netip.Addr{{cloud1, our1}, {cloud2, our2}} {
		err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: p[1].String(), PeerAsn: ourASN},
			Transport: &api.Transport{LocalAddress: p[0].String(), RemotePort: uint32(ourPort)},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, IdleHoldTimeAfterReset: 1, HoldTime: 9, KeepaliveInterval: 3}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	nlri, _ := gbgp.NewIPAddrPrefix(cloudNet)
	nh, _ := gbgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
	_, err = srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{
		Family: gbgp.RF_IPv4_UC, Nlri: nlri, Attrs: []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(0), nh},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{srv: srv}
}

// asPathFrom is the AS path of localNet as the cloud received it from our address, or nil.
func (c *cloud) asPathFrom(ours netip.Addr) []uint32 {
	var path []uint32
	_ = c.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: ours.String(), Family: gbgp.RF_IPv4_UC},
		func(nlri gbgp.NLRI, paths []*apiutil.Path) {
			if nlri.String() != localNet.String() {
				return
			}
			for _, p := range paths {
				for _, a := range p.Attrs {
					if as, ok := a.(*gbgp.PathAttributeAsPath); ok {
						path = []uint32{}
						for _, seg := range as.Value {
							path = append(path, seg.GetAS()...)
						}
					}
				}
			}
		})
	return path
}

func speakerConfig() bgp.Config {
	return bgp.Config{
		LocalASN: ourASN,
		Neighbors: []bgp.Neighbor{
			{Name: "tunnel1", LocalAddress: our1, PeerAddress: cloud1, PeerASN: cloudASN, LocalPreference: 200, HoldTime: 9 * time.Second},
			{Name: "tunnel2", LocalAddress: our2, PeerAddress: cloud2, PeerASN: cloudASN, Prepend: 2, HoldTime: 9 * time.Second},
		},
		Networks: []netip.Prefix{localNet},
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func established(s *bgp.Speaker, names ...string) func() bool {
	return func() bool {
		for _, n := range s.Status().Neighbors {
			if slices.Contains(names, n.Name) && n.State != bgp.StateEstablished {
				return false
			}
		}
		return true
	}
}

func installedVia(sink *bgptest.Sink, neighbor string) func() bool {
	return func() bool {
		r, ok := sink.Route(cloudNet)
		return ok && r.Neighbor == neighbor
	}
}

// TestSpeakerOverTwoSessions runs the speaker against a gobgp cloud over loopback: the prefix both sessions offer
// is installed via the neighbor with the higher local preference, the other neighbor gets our network with the
// prepend, a dropped session moves the route and both dropped withdraw it, a preference change moves it without
// resetting a session, the same Set twice changes nothing, and Close withdraws what was installed. The sink follows
// gobgp's events alone (no periodic resync).
func TestSpeakerOverTwoSessions(t *testing.T) {
	ourPort, cloudPort := freePort(t), freePort(t)
	cl := startCloud(t, cloudPort, ourPort)
	sink := &bgptest.Sink{}
	// No periodic resync: gobgp's best-path and session events alone must bring the sink along.
	s, err := bgp.New(bgp.Opts{Sink: sink, ListenPort: ourPort, PeerPort: cloudPort, ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cfg := speakerConfig()
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "both sessions established", 30*time.Second, established(s, "tunnel1", "tunnel2"))
	waitFor(t, "10.2.0.0/16 installed via tunnel1 (local preference 200)", 10*time.Second, installedVia(sink, "tunnel1"))
	if r, _ := sink.Route(cloudNet); r.NextHop != cloud1 {
		t.Errorf("next hop %s, want %s", r.NextHop, cloud1)
	}
	routes := s.Routes()
	want := []bgp.LearnedRoute{
		{Prefix: cloudNet, NextHop: cloud1, Neighbor: "tunnel1", Best: true, LocalPreference: 200, ASPath: []uint32{cloudASN}},
		{Prefix: cloudNet, NextHop: cloud2, Neighbor: "tunnel2", Best: false, LocalPreference: 100, ASPath: []uint32{cloudASN}},
	}
	if d := cmp.Diff(routes, want, netipEqual...); d != "" {
		t.Errorf("Routes (-got +want):\n%s", d)
	}
	waitFor(t, "the cloud has our network from both sessions", 10*time.Second, func() bool {
		return cl.asPathFrom(our1) != nil && cl.asPathFrom(our2) != nil
	})
	if d := cmp.Diff(cl.asPathFrom(our1), []uint32{ourASN}); d != "" {
		t.Errorf("AS path over tunnel1 (-got +want):\n%s", d)
	}
	if d := cmp.Diff(cl.asPathFrom(our2), []uint32{ourASN, ourASN, ourASN}); d != "" {
		t.Errorf("AS path over tunnel2, prepended twice (-got +want):\n%s", d)
	}
	for _, n := range s.Status().Neighbors {
		if n.PrefixesReceived != 1 || n.PrefixesAdvertised != 1 || n.Since.IsZero() {
			t.Errorf("status of %s: %+v, want 1 received, 1 advertised, an uptime", n.Name, n)
		}
	}

	// The same configuration again: no session reset, no call to the sink.
	before, calls := s.Status(), len(sink.Calls())
	if err := s.Set(ctx, speakerConfig()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // time for any event to reach the sink
	if got := sink.Calls()[calls:]; len(got) != 0 {
		t.Errorf("the same Set again called the sink: %q", got)
	}
	for i, n := range s.Status().Neighbors {
		if n.State != bgp.StateEstablished || !n.Since.Equal(before.Neighbors[i].Since) {
			t.Errorf("the same Set again reset %s: %+v, before %+v", n.Name, n, before.Neighbors[i])
		}
	}

	// The cloud cuts tunnel1's session: the route moves to tunnel2; then tunnel2's: withdrawn.
	if err := cl.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: our1.String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "10.2.0.0/16 moved to tunnel2 after tunnel1's session dropped", 10*time.Second, installedVia(sink, "tunnel2"))
	if err := cl.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: our2.String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "10.2.0.0/16 withdrawn with both sessions down", 10*time.Second, func() bool { _, ok := sink.Route(cloudNet); return !ok })
	for _, p := range []netip.Addr{our1, our2} {
		if err := cl.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: p.String()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both sessions back", 30*time.Second, established(s, "tunnel1", "tunnel2"))
	waitFor(t, "10.2.0.0/16 back via tunnel1", 10*time.Second, installedVia(sink, "tunnel1"))

	// Prefer tunnel2 now: the route moves, no session is reset.
	before = s.Status()
	cfg = speakerConfig()
	cfg.Neighbors[0].LocalPreference, cfg.Neighbors[1].LocalPreference = 100, 300
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "10.2.0.0/16 moved to tunnel2 by its local preference", 10*time.Second, installedVia(sink, "tunnel2"))
	for i, n := range s.Status().Neighbors {
		if !n.Since.Equal(before.Neighbors[i].Since) {
			t.Errorf("a preference change reset %s", n.Name)
		}
	}

	// Close withdraws what it installed.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sink.Routes(); len(got) != 0 {
		t.Errorf("after Close the sink still holds %v", got)
	}
	if err := s.Set(ctx, cfg); err != bgp.ErrClosed {
		t.Errorf("Set after Close = %v, want ErrClosed", err)
	}
	t.Logf("sink calls: %q", sink.Calls())
}

// TestSinkFailureIsRetried: a route the sink refused is installed by a later resync.
func TestSinkFailureIsRetried(t *testing.T) {
	ourPort, cloudPort := freePort(t), freePort(t)
	startCloud(t, cloudPort, ourPort)
	sink := &bgptest.Sink{}
	sink.Fail(errors.New("no such interface"))
	s, err := bgp.New(bgp.Opts{Sink: sink, ListenPort: ourPort, PeerPort: cloudPort, ResyncInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Set(context.Background(), speakerConfig()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a learned route", 30*time.Second, func() bool { return len(s.Routes()) > 0 })
	time.Sleep(500 * time.Millisecond)
	if len(sink.Calls()) != 0 {
		t.Fatalf("a failing sink recorded %q", sink.Calls())
	}
	sink.Fail(nil)
	waitFor(t, "10.2.0.0/16 installed once the sink works", 5*time.Second, installedVia(sink, "tunnel1"))
}

// TestCloseLeavesNoGoroutines: after Close, neither the speaker nor its gobgp leaves a goroutine behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	sink := &bgptest.Sink{}
	s, err := bgp.New(bgp.Opts{Sink: sink, ListenPort: freePort(t), PeerPort: freePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := speakerConfig()
	if err := s.Set(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.LocalASN++ // a new gobgp instance replaces the first
	if err := s.Set(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "goroutines back to where they were", 5*time.Second, func() bool { return runtime.NumGoroutine() <= before })
}
