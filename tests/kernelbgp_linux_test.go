package tests

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"toride/dataplane/probe"
	"toride/ike/awsconf"
	"toride/tests/cloudlab"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

// TestIPsecKernelBGP runs where the kernel has ESP and xfrm interfaces (the VM tier): the cloud's BGP file, imported
// and committed with no other step, gives two route-based tunnels each carrying a BGP session to the cloud's
// speaker (FRR's bgpd beside each gateway's charon); the cloud LAN is learned and routed into the preferred
// tunnel's interface, the site LAN announced to both; a BGP session that ends moves the prefix to the other
// tunnel, and so does a gateway that dies while its session lingers (the probes deprefer it).
func TestIPsecKernelBGP(t *testing.T) {
	caps, err := probe.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lab.RequireKernel(t, caps.ESP && caps.XFRMInterfaces, "ESP and xfrm interfaces")
	tp, d, st := bgpLab(t)
	if dst := routeInto(t, tp); dst != "aws-t1" {
		t.Fatalf("the cloud LAN is routed into %q, want the preferred tunnel's aws-t1", dst)
	}
	if show := d.MustToride("show", "ipsec"); !strings.Contains(show, "route-based") || !strings.Contains(show, "BGP aws tunnel1: established") {
		t.Errorf("show ipsec:\n%s", show)
	}
	if routes := d.MustToride("show", "ipsec", "bgp", "routes"); !strings.Contains(routes, cloudlab.CloudLAN) || !strings.Contains(routes, "aws tunnel1") {
		t.Errorf("show ipsec bgp routes:\n%s", routes)
	}
	// And so does Prometheus.
	requireMetrics(t, d,
		`^toride_ipsec_tunnel_up\{connection="aws",tunnel="tunnel1"\} 1$`,
		`^toride_ipsec_tunnel_active\{connection="aws",tunnel="tunnel1"\} 1$`,
		`^toride_ipsec_bgp_session_up\{connection="aws",tunnel="tunnel1"\} 1$`,
		`^toride_ipsec_bgp_session_up\{connection="aws",tunnel="tunnel2"\} 1$`,
		`^toride_ipsec_bgp_prefixes_received\{connection="aws",tunnel="tunnel1"\} [1-9]`,
		`^toride_ipsec_bgp_routes\{kind="best"\} 1$`,
		`^toride_ipsec_charon_up 1$`)
	tp.WaitPing(lab.Within(t, 30*time.Second), t)
	links := tunnelLinks(t, tp, st)
	pinger := tp.StartPinger(t)
	waitCarriedBy(t, d, tp, links, 0, "LAN traffic over the tunnel BGP prefers")

	// The preferred tunnel's BGP session ends (its speaker dies): the prefix moves to the other session, and the
	// traffic with it; the cloud keeps answering over tunnel 1, which is still up.
	cut := time.Now()
	tp.BGPs[0].BGPD.Kill()
	waitTunnels(t, d, tp, "the cloud LAN learned over tunnel 2 alone", func(st ipsecStatus) error { return learnedVia(st, "aws tunnel2") })
	t.Logf("session over tunnel 1 ended → prefix routed into tunnel 2: %v", time.Since(cut).Round(time.Millisecond))
	waitCarriedBy(t, d, tp, links, 1, "LAN traffic over tunnel 2 after tunnel 1's session ended")
	gap, _ := pinger.GapAround(cut)
	t.Logf("traffic gap while the route moved: %v", gap.Round(100*time.Millisecond))

	// The session comes back: the prefix returns to the preferred tunnel.
	tp.BGPs[0].StartBGPD(t)
	waitTunnels(t, d, tp, "the cloud LAN back over tunnel 1", func(st ipsecStatus) error { return learnedVia(st, "aws tunnel1") })
	waitCarriedBy(t, d, tp, links, 0, "LAN traffic back over tunnel 1")

	// Gateway 1 dies without a word: its BGP session lingers until the hold time, but the probes see the tunnel
	// carry nothing at once and deprefer it.
	killed := time.Now()
	tp.GWs[0].Proc.Kill()
	tp.RouteCloudVia(t, 1)
	waitTunnels(t, d, tp, "the cloud LAN routed into tunnel 2 after gateway 1 died", func(st ipsecStatus) error {
		return learnedVia(st, "aws tunnel2")
	})
	gap = waitResumed(t, tp, pinger, killed)
	t.Logf("traffic gap after gateway 1 died (default probes; BGP hold 9 s): %v", gap.Round(100*time.Millisecond))
}

// TestIPsecBGPOverLibipsec runs where the kernel has no ESP (kernel-libipsec, policy-based tunnels): the same
// import and commit give both BGP sessions over CHILD_SAs that select everything on the cloud's side, as the
// cloud's own do; only the learned prefix and the sessions' addresses are routed into the tunnels, never the
// box's other traffic; a session that ends takes the LAN traffic to the other tunnel.
func TestIPsecBGPOverLibipsec(t *testing.T) {
	caps, err := probe.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if caps.ESP {
		t.Skip("this kernel has ESP: torided runs it route-based (TestIPsecKernelBGP)")
	}
	tp, d, st := bgpLab(t)
	if st.Backend != "kernel-libipsec" || st.Mode != "policy-based" {
		t.Fatalf("backend %q, mode %q", st.Backend, st.Mode)
	}
	if show := d.MustToride("show", "ipsec"); !strings.Contains(show, "policy-based") || !strings.Contains(show, "BGP aws tunnel1: established") {
		t.Errorf("show ipsec:\n%s", show)
	}
	// The box's own traffic elsewhere keeps the main table's default route; the cloud LAN goes into the tunnels.
	for dst, dev := range map[string]string{"192.0.2.77": "wan0", "10.2.0.20": "ipsec0"} {
		if out := tp.App.MustRun("ip", "route", "get", dst); !strings.Contains(out, "dev "+dev) {
			t.Errorf("ip route get %s: %s, want it to leave by %s", dst, out, dev)
		}
	}
	requireMetrics(t, d, `^toride_ipsec_bgp_session_up\{connection="aws",tunnel="tunnel2"\} 1$`)
	tp.WaitPing(lab.Within(t, 30*time.Second), t)
	pinger := tp.StartPinger(t)
	carriedBy := func(want int, what string) {
		t.Helper()
		// The status reads the SAs' counters every 2 s, and flags the carrier at once: the counting starts
		// from the first reading taken after the status called tunnel want active, so that packets sent
		// before a move (during the start's steering, say) are not held against it.
		var flagged, start []uint64
		waitTunnels(t, d, tp, what+" (the status)", func(now ipsecStatus) error {
			if !now.Connections[0].Tunnels[want].Active {
				flagged = nil
				return fmt.Errorf("tunnel %d is not active", want+1)
			}
			if flagged == nil {
				flagged = packetsOut(now)
			}
			if slices.Equal(packetsOut(now), flagged) {
				return fmt.Errorf("no counters read since tunnel %d was flagged active", want+1)
			}
			start = packetsOut(now)
			return nil
		})
		waitTunnels(t, d, tp, what, func(now ipsecStatus) error {
			if !now.Connections[0].Tunnels[want].Active {
				return lab.Permanent(fmt.Errorf("tunnel %d is no longer active", want+1))
			}
			return cloudlab.CarriedBy(start, packetsOut(now), want)
		})
	}
	carriedBy(0, "LAN traffic over the tunnel BGP prefers")

	// The preferred tunnel's session ends (its speaker dies): the prefix is withdrawn from it, and the LAN
	// traffic moves to tunnel 2; the cloud keeps answering over tunnel 1, which is still up.
	cut := time.Now()
	tp.BGPs[0].BGPD.Kill()
	waitTunnels(t, d, tp, "the cloud LAN learned over tunnel 2 alone", func(st ipsecStatus) error { return learnedVia(st, "aws tunnel2") })
	t.Logf("session over tunnel 1 ended → prefix learned over tunnel 2 alone: %v", time.Since(cut).Round(time.Millisecond))
	carriedBy(1, "LAN traffic over tunnel 2 after tunnel 1's session ended")
	t.Logf("session over tunnel 1 ended → LAN traffic over tunnel 2: %v", time.Since(cut).Round(time.Millisecond))
	gap, _ := pinger.GapAround(cut)
	t.Logf("traffic gap while the traffic moved: %v", gap.Round(100*time.Millisecond))
}

// bgpLab starts the lab with FRR beside each gateway and torided, imports the cloud's BGP file and commits with
// no other step, and waits for both sessions, the cloud LAN learned over the preferred tunnel, and the site LAN
// heard by both of the cloud's speakers.
func bgpLab(t *testing.T) (*cloudlab.Topo, *toridetest.Daemon, ipsecStatus) {
	t.Helper()
	tp := cloudlab.New(t, cloudlab.Options{BGP: true})
	d := toridetest.Start(t, tp.App, t.TempDir())
	file := labFileWith(t, awsconf.FormatGeneric, 2, func(tn *awsconf.Tunnel) {
		tn.BGP = &awsconf.BGP{CustomerASN: cloudlab.SiteASN, CloudASN: cloudlab.CloudASN,
			Neighbor: tn.VPNGatewayInside.Addr(), HoldTime: 30 * time.Second}
	})
	start := time.Now()
	importAndCommitWith(t, d, tp, file)
	st := waitTunnels(t, d, tp, "both BGP sessions up and the cloud LAN learned", func(st ipsecStatus) error {
		for _, tn := range st.Connections[0].Tunnels {
			if tn.BGP == nil || tn.BGP.State != "established" {
				return fmt.Errorf("%s: BGP %+v", tn.Name, tn.BGP)
			}
		}
		return learnedVia(st, "aws tunnel1")
	})
	t.Logf("commit → both sessions established and %s learned: %v", cloudlab.CloudLAN, time.Since(start).Round(time.Millisecond))
	// The cloud hears the site LAN on both sessions (its own view).
	for i, b := range tp.BGPs {
		if err := lab.WaitFor(lab.Within(t, 20*time.Second), 200*time.Millisecond, func() error {
			got, err := b.Received()
			if err != nil {
				return err
			}
			if _, ok := got["10.1.0.0/24"]; !ok {
				return fmt.Errorf("gateway %d's bgpd has %v from the appliance", i+1, got)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return tp, d, st
}

// learnedVia checks that the cloud LAN's best path is over the given tunnel and no problem is reported.
func learnedVia(st ipsecStatus, tunnel string) error {
	if len(st.BGPProblems) > 0 {
		return lab.Permanent(fmt.Errorf("BGP problems: %q", st.BGPProblems))
	}
	for _, r := range st.BGPRoutes {
		if r.Best && netip.MustParsePrefix(r.Prefix) == netip.MustParsePrefix(cloudlab.CloudLAN) {
			if r.Neighbor != tunnel {
				return fmt.Errorf("%s learned best over %s", r.Prefix, r.Neighbor)
			}
			return nil
		}
	}
	return fmt.Errorf("%s not learned: %+v", cloudlab.CloudLAN, st.BGPRoutes)
}
