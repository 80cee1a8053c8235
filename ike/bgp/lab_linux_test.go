package bgp_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"toride/ike/bgp"
	"toride/ike/bgp/bgptest"
	"toride/tests/frr"
	"toride/tests/lab"
)

// The two tunnels' inside /30s: the cloud's side .1, ours .2.
var (
	labOur1, labCloud1 = netip.MustParseAddr("169.254.10.2"), netip.MustParseAddr("169.254.10.1")
	labOur2, labCloud2 = netip.MustParseAddr("169.254.11.2"), netip.MustParseAddr("169.254.11.1")
)

const labPassword = "toride-md5-key"

// cloudConf is FRR's configuration: the cloud's speaker of both tunnels, one session with an MD5 key.
func cloudConf() string {
	return fmt.Sprintf(`frr defaults traditional
hostname cloud
log stdout informational
!
router bgp %[1]d
 bgp router-id %[2]s
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor %[3]s remote-as %[5]d
 neighbor %[3]s password %[6]s
 neighbor %[3]s timers 3 9
 neighbor %[3]s timers connect 2
 neighbor %[4]s remote-as %[5]d
 neighbor %[4]s timers 3 9
 neighbor %[4]s timers connect 2
 address-family ipv4 unicast
  network %[7]s
 exit-address-family
!
`, cloudASN, labCloud1, labOur1, labOur2, ourASN, labPassword, cloudNet)
}

// TestSpeakerWithFRR: the speaker, in a namespace given by path, runs two sessions over two links (the tunnels'
// inside /30s, one with an MD5 key) with FRR's bgpd as the cloud. It learns the cloud's prefix from both and
// installs it via the preferred tunnel; FRR holds our network from both sessions, prepended on the other one;
// when FRR shuts the preferred session down, and when the preferred link goes down, the route moves to the other
// tunnel; Close withdraws it.
func TestSpeakerWithFRR(t *testing.T) {
	l := lab.New(t, "unshare", "vtysh")
	app, cloudNS := l.Namespace("app"), l.Namespace("cloud")
	l.Link(app, "tun1", labOur1.String()+"/30", cloudNS, "gw1", labCloud1.String()+"/30")
	l.Link(app, "tun2", labOur2.String()+"/30", cloudNS, "gw2", labCloud2.String()+"/30")
	f := frr.Start(t, cloudNS, cloudConf(), frr.Options{Zebra: true})

	sink := &bgptest.Sink{}
	s, err := bgp.New(bgp.Opts{Sink: sink, NetnsPath: "/run/netns/" + app.Name, ResyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := bgp.Config{
		LocalASN: ourASN,
		Neighbors: []bgp.Neighbor{
			{Name: "tunnel1", LocalAddress: labOur1, PeerAddress: labCloud1, PeerASN: cloudASN, HoldTime: 9 * time.Second,
				LocalPreference: 200, Password: labPassword},
			{Name: "tunnel2", LocalAddress: labOur2, PeerAddress: labCloud2, PeerASN: cloudASN, HoldTime: 9 * time.Second,
				Prepend: 2},
		},
		Networks: []netip.Prefix{localNet},
	}
	ctx := lab.Within(t, 3*time.Minute)
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, d time.Duration, cond func() error) {
		t.Helper()
		start := time.Now()
		if err := lab.WaitFor(lab.Within(t, d), 100*time.Millisecond, cond); err != nil {
			t.Fatalf("not within %s: %s: %v\nstatus: %+v\nroutes: %+v\nsink: %q", d, what, err, s.Status(), s.Routes(), sink.Calls())
		}
		t.Logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
	}
	sessions := func(want ...string) func() error {
		return func() error {
			for i, n := range s.Status().Neighbors {
				if n.State != want[i] {
					return fmt.Errorf("%s is %s, FRR says %s", n.Name, n.State, f.State(cfg.Neighbors[i].LocalAddress))
				}
			}
			return nil
		}
	}
	via := func(name string, nh netip.Addr) func() error {
		return func() error {
			r, ok := sink.Route(cloudNet)
			if !ok || r.Neighbor != name || r.NextHop != nh {
				return fmt.Errorf("installed: %+v (%v)", r, ok)
			}
			return nil
		}
	}

	wait("both sessions established", 60*time.Second, sessions(bgp.StateEstablished, bgp.StateEstablished))
	for _, p := range []netip.Addr{labOur1, labOur2} {
		if st := f.State(p); st != "Established" {
			t.Errorf("FRR's session with %s is %s", p, st)
		}
	}
	wait("10.2.0.0/16 installed via tunnel1", 10*time.Second, via("tunnel1", labCloud1))
	if routes := s.Routes(); len(routes) != 2 || !routes[0].Best || routes[0].LocalPreference != 200 || routes[1].Neighbor != "tunnel2" {
		t.Errorf("Routes: %+v, want the tunnel1 path best with local preference 200, and tunnel2's", routes)
	}
	wait("FRR holds our network from both sessions, prepended on tunnel2", 10*time.Second, func() error {
		paths, err := f.ASPaths(localNet)
		if err != nil {
			return err
		}
		want := map[string]string{labOur1.String(): "65000", labOur2.String(): "65000 65000 65000"}
		if fmt.Sprint(paths) != fmt.Sprint(want) {
			return fmt.Errorf("FRR's AS paths for %s: %v, want %v", localNet, paths, want)
		}
		return nil
	})

	// The cloud shuts the preferred session down (a Cease notification): the route moves at once.
	f.Configure(t, cloudASN, "neighbor "+labOur1.String()+" shutdown")
	wait("10.2.0.0/16 moved to tunnel2 after FRR shut tunnel1's session", 10*time.Second, via("tunnel2", labCloud2))
	f.Configure(t, cloudASN, "no neighbor "+labOur1.String()+" shutdown")
	wait("tunnel1's session back", 60*time.Second, sessions(bgp.StateEstablished, bgp.StateEstablished))
	wait("10.2.0.0/16 back via tunnel1", 10*time.Second, via("tunnel1", labCloud1))

	// The preferred link goes down without a word: the hold time (9 s) ends the session, the route moves.
	link, err := app.Handle().LinkByName("tun1")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Handle().LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	wait("10.2.0.0/16 moved to tunnel2 after tunnel1's link went down", 20*time.Second, via("tunnel2", labCloud2))
	if st := s.Status().Neighbors[0]; st.State == bgp.StateEstablished {
		t.Errorf("tunnel1 still established after its link went down: %+v", st)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r := sink.Routes(); len(r) != 0 {
		t.Errorf("after Close the sink holds %v", r)
	}
	if !strings.Contains(strings.Join(sink.Calls(), "\n"), "withdraw "+cloudNet.String()) {
		t.Errorf("no withdraw recorded: %q", sink.Calls())
	}
}
