package tests

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"toride/dataplane/probe"
	"toride/ike"
	"toride/ike/awsconf"
	"toride/tests/cloudlab"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

// TestIPsecKernelESP runs where the kernel has ESP and xfrm interfaces (the VM tier, tests/vm, boots the
// appliance's kernel for it): the cloud's file gives route-based tunnels, one xfrm interface each, on SAs the
// kernel holds; LAN traffic crosses with AES-GCM and with AES-CBC/SHA-256; the active gateway's death moves the
// traffic by a route change, the status naming the tunnel whose interface really carries it; fail-back follows
// the hold-down while the cloud keeps answering over the other tunnel; SYNs reach the cloud with their MSS
// clamped; and a charon restart brings the tunnels back on the interfaces that were there.
func TestIPsecKernelESP(t *testing.T) {
	caps, err := probe.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lab.RequireKernel(t, caps.ESP && caps.XFRMInterfaces, "ESP and xfrm interfaces")
	tp := cloudlab.New(t, cloudlab.Options{})
	d := toridetest.Start(t, tp.App, t.TempDir())
	gcm := func(tn *awsconf.Tunnel) { tn.Phase2.Encryption = ike.AES256GCM16 }
	up := importAndCommitTunnels(t, d, tp, labFileWith(t, awsconf.FormatGeneric, 2, gcm))
	t.Logf("commit → both tunnels up %v", up.Round(time.Millisecond))

	st := ipsecNow(t, d)
	if st.Backend != "kernel-netlink" || st.Mode != string(ike.ModeRouteBased) {
		t.Fatalf("backend %q, mode %q on a kernel with ESP and xfrm interfaces; want kernel-netlink, route-based", st.Backend, st.Mode)
	}
	show := d.MustToride("show", "ipsec")
	for _, want := range []string{"route-based", "kernel-netlink", st.Connections[0].Tunnels[0].Interface} {
		if !strings.Contains(show, want) {
			t.Errorf("show ipsec lacks %q:\n%s", want, show)
		}
	}

	// Each tunnel is an xfrm interface with the cloud's MTU and the tunnel's inside address, whose if_id binds a
	// pair of the kernel's own SAs with the negotiated AES-GCM.
	links := tunnelLinks(t, tp, st)
	for i, l := range links {
		x := l.(*netlink.Xfrmi)
		if x.MTU != ike.DefaultTunnelMTU {
			t.Errorf("%s: MTU %d, want %d", x.Name, x.MTU, ike.DefaultTunnelMTU)
		}
		inside := netip.MustParsePrefix(cloudlab.GWInside[i])
		want := netip.PrefixFrom(inside.Addr().Next().Next(), 30).String()
		addrs, _ := tp.App.Handle().AddrList(l, netlink.FAMILY_V4)
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == want }) {
			t.Errorf("%s lacks the inside address %s: %v", x.Name, want, addrs)
		}
		if n := kernelSAs(t, tp, x.Ifid); n != 2 {
			tp.Diagnose(t)
			t.Errorf("%s (if_id %d): %d kernel SAs, want a pair", x.Name, x.Ifid, n)
		}
		if algs := st.Connections[0].Tunnels[i].ChildAlgs; !strings.Contains(algs, "AES_GCM") {
			t.Errorf("tunnel %d negotiated %q, want AES-GCM", i+1, algs)
		}
	}

	tp.WaitPing(lab.Within(t, 30*time.Second), t)
	active := activeTunnel(t, st)
	pinger := tp.StartPinger(t)
	waitCarriedBy(t, d, tp, links, active, "LAN traffic over the active tunnel's interface")

	// The MSS of a SYN crossing the tunnel reaches the cloud clamped to the file's 1379.
	checkMSSClamp(t, tp)

	// The active gateway dies without a word: the route moves to the other tunnel.
	killed := time.Now()
	tp.GWs[active].Proc.Kill()
	tp.RouteCloudVia(t, 1-active)
	gap := waitResumed(t, tp, pinger, killed)
	t.Logf("traffic gap after the active gateway died (default probes): %v", gap.Round(100*time.Millisecond))
	if gap > maxFailoverGap {
		t.Errorf("traffic gap %v, want under %v", gap, maxFailoverGap)
	}
	waitTunnels(t, d, tp, "the other tunnel active after a counted failover", func(st ipsecStatus) error {
		c := st.Connections[0]
		if c.Failovers == 0 || !c.Tunnels[1-active].Active {
			return fmt.Errorf("failovers %d, tunnel %d active %v", c.Failovers, 2-active, c.Tunnels[1-active].Active)
		}
		return nil
	})
	if dst := routeInto(t, tp); dst != links[1-active].Attrs().Name {
		t.Errorf("the cloud LAN is routed into %q, want %q", dst, links[1-active].Attrs().Name)
	}
	waitCarriedBy(t, d, tp, links, 1-active, "LAN traffic over the surviving tunnel's interface")

	// The gateway comes back; after the hold-down traffic returns to it, while the cloud keeps answering over the
	// other tunnel (loose reverse-path filtering accepts it).
	tp.GWs[active].Start(t)
	waitTunnels(t, d, tp, "fail-back to the preferred tunnel", func(st ipsecStatus) error {
		c := st.Connections[0]
		if c.Failbacks == 0 || !c.Tunnels[active].Active {
			return fmt.Errorf("failbacks %d, tunnel %d active %v", c.Failbacks, active+1, c.Tunnels[active].Active)
		}
		return nil
	})
	waitCarriedBy(t, d, tp, links, active, "LAN traffic back over the preferred tunnel's interface")
	tp.WaitPing(lab.Within(t, 10*time.Second), t)

	// AES-CBC with SHA-256: a change of the proposal re-establishes both tunnels with it.
	for _, tn := range []string{"tunnel1", "tunnel2"} {
		d.MustToride("delete", "ipsec", "connections", "aws", "tunnels", tn, "esp", "encryption")
		d.MustToride("delete", "ipsec", "connections", "aws", "tunnels", tn, "esp", "integrity")
		d.MustToride("set", "ipsec", "connections", "aws", "tunnels", tn, "esp", "encryption", "aes256")
		d.MustToride("set", "ipsec", "connections", "aws", "tunnels", tn, "esp", "integrity", "sha256")
	}
	d.MustToride("commit", "AES-CBC", "with", "SHA-256")
	waitTunnels(t, d, tp, "both tunnels up with AES-CBC/SHA-256", func(st ipsecStatus) error {
		if err := bothTunnelsUp(st); err != nil {
			return err
		}
		for _, tn := range st.Connections[0].Tunnels {
			if !strings.Contains(tn.ChildAlgs, "AES_CBC-256") || !strings.Contains(tn.ChildAlgs, "HMAC_SHA2_256") {
				return fmt.Errorf("%s negotiated %q", tn.Name, tn.ChildAlgs)
			}
		}
		return nil
	})
	tp.WaitPing(lab.Within(t, 30*time.Second), t)

	// charon is killed: the supervisor starts a new one, which brings the tunnels back on the same interfaces
	// (not re-created: same index), with the routes where they were, and the SAs the dead one left are removed.
	st = ipsecNow(t, d)
	indexes := []int{links[0].Attrs().Index, links[1].Attrs().Index}
	routed := routeInto(t, tp)
	if err := syscall.Kill(st.Charon.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill charon %d: %v", st.Charon.PID, err)
	}
	waitTunnels(t, d, tp, "both tunnels up on a new charon", func(now ipsecStatus) error {
		if now.Charon.Starts <= st.Charon.Starts {
			return fmt.Errorf("charon not restarted yet")
		}
		return bothTunnelsUp(now)
	})
	links = tunnelLinks(t, tp, ipsecNow(t, d))
	if got := []int{links[0].Attrs().Index, links[1].Attrs().Index}; !slices.Equal(got, indexes) {
		t.Errorf("interfaces re-created by a charon restart: indexes %v, were %v", got, indexes)
	}
	// The dead charon's SAs are gone: one pair per tunnel, the new charon's.
	for _, l := range links {
		id := l.(*netlink.Xfrmi).Ifid
		if err := lab.WaitFor(lab.Within(t, 10*time.Second), 200*time.Millisecond, func() error {
			if n := kernelSAs(t, tp, id); n != 2 {
				return fmt.Errorf("%d kernel SAs on %s, want the new charon's pair", n, l.Attrs().Name)
			}
			return nil
		}); err != nil {
			tp.Diagnose(t)
			t.Error(err)
		}
	}
	// Whichever tunnel the new charon brought up first took the traffic; the preferred one has it back after the
	// hold-down (5 s here).
	if err := lab.WaitFor(lab.Within(t, 15*time.Second), 200*time.Millisecond, func() error {
		if now := routeInto(t, tp); now != routed {
			return fmt.Errorf("after a charon restart the cloud LAN is routed into %q, was %q", now, routed)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	tp.WaitPing(lab.Within(t, 30*time.Second), t)
}

func ipsecNow(t *testing.T, d *toridetest.Daemon) ipsecStatus {
	t.Helper()
	var st ipsecStatus
	if err := d.API.Do(context.Background(), "GET", "/api/v1/ipsec/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Connections) != 1 || len(st.Connections[0].Tunnels) != 2 {
		t.Fatalf("want one connection with two tunnels: %+v", st)
	}
	return st
}

func activeTunnel(t *testing.T, st ipsecStatus) int {
	t.Helper()
	for i, tn := range st.Connections[0].Tunnels {
		if tn.Active {
			return i
		}
	}
	t.Fatalf("no active tunnel: %+v", st)
	return -1
}

// tunnelLinks returns the xfrm interfaces the status names for the two tunnels.
func tunnelLinks(t *testing.T, tp *cloudlab.Topo, st ipsecStatus) []netlink.Link {
	t.Helper()
	var out []netlink.Link
	for _, tn := range st.Connections[0].Tunnels {
		l, err := tp.App.Handle().LinkByName(tn.Interface)
		if err != nil {
			tp.Diagnose(t)
			t.Fatalf("tunnel %s: interface %q: %v", tn.Name, tn.Interface, err)
		}
		if _, ok := l.(*netlink.Xfrmi); !ok {
			t.Fatalf("%s is a %s, not an xfrm interface", tn.Interface, l.Type())
		}
		out = append(out, l)
	}
	return out
}

// kernelSAs counts the kernel's ESP SAs bound to if_id.
func kernelSAs(t *testing.T, tp *cloudlab.Topo, ifID uint32) int {
	t.Helper()
	states, err := tp.App.Handle().XfrmStateList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range states {
		if s.Proto == netlink.XFRM_PROTO_ESP && s.Ifid == int(ifID) {
			n++
		}
	}
	return n
}

// routeInto returns the interface the appliance routes the cloud LAN into.
func routeInto(t *testing.T, tp *cloudlab.Topo) string {
	t.Helper()
	routes, err := tp.App.Handle().RouteGet(net.ParseIP(cloudlab.CloudHost))
	if err != nil || len(routes) == 0 {
		t.Fatalf("route to %s: %v", cloudlab.CloudHost, err)
	}
	l, err := tp.App.Handle().LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Name
}

// waitCarriedBy waits until the interfaces' packet counters show the LAN traffic leaving by tunnel want's
// interface alone, and the status calling that tunnel active: the kernel's counters are the truth.
func waitCarriedBy(t *testing.T, d *toridetest.Daemon, tp *cloudlab.Topo, links []netlink.Link, want int, what string) {
	t.Helper()
	sent := func() []uint64 {
		var o []uint64
		for _, l := range links {
			now, err := tp.App.Handle().LinkByName(l.Attrs().Name)
			if err != nil {
				t.Fatal(err)
			}
			o = append(o, now.Attrs().Statistics.TxPackets)
		}
		return o
	}
	start := sent()
	err := lab.WaitFor(lab.Within(t, 30*time.Second), 200*time.Millisecond, func() error {
		if err := cloudlab.CarriedBy(start, sent(), want); err != nil {
			return err
		}
		var st ipsecStatus
		if err := d.API.Do(context.Background(), "GET", "/api/v1/ipsec/status", nil, &st); err != nil {
			return err
		}
		if !st.Connections[0].Tunnels[want].Active {
			return lab.Permanent(fmt.Errorf("the traffic leaves by tunnel %d, but the status calls it inactive", want+1))
		}
		return nil
	})
	if err != nil {
		tp.Diagnose(t)
		t.Fatalf("%s: %v", what, err)
	}
}

func waitResumed(t *testing.T, tp *cloudlab.Topo, p *cloudlab.Pinger, t0 time.Time) time.Duration {
	t.Helper()
	err := lab.WaitFor(lab.Within(t, 60*time.Second), 200*time.Millisecond, func() error {
		if _, resumed := p.GapAround(t0); !resumed {
			return fmt.Errorf("LAN traffic has not resumed")
		}
		return nil
	})
	if err != nil {
		tp.Diagnose(t)
		t.Fatal(err)
	}
	gap, _ := p.GapAround(t0)
	return gap
}

// checkMSSClamp sends TCP SYNs (MSS 1460, from a 1500-byte link) from the site LAN to the cloud host and counts,
// at the cloud host, the SYNs that arrive with the MSS clamped to the file's 1379 and those that do not.
func checkMSSClamp(t *testing.T, tp *cloudlab.Topo) {
	t.Helper()
	const port = "7"
	for _, cmd := range []string{
		"add table inet msscheck",
		"add chain inet msscheck in { type filter hook input priority 0 ; }",
		"add rule inet msscheck in tcp dport " + port + " tcp flags & (syn|ack) == syn tcp option maxseg size " +
			strconv.Itoa(ike.DefaultTCPMSS) + " counter",
		"add rule inet msscheck in tcp dport " + port + " tcp flags & (syn|ack) == syn counter",
	} {
		tp.Cloud.MustRun("nft", cmd)
	}
	for range 3 {
		tp.Site.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(cloudlab.CloudHost, port), 2*time.Second)
			if err == nil {
				c.Close()
			}
			return nil // refused: the SYN arrived, which is all that counts
		})
	}
	out := tp.Cloud.MustRun("nft", "list", "chain", "inet", "msscheck", "in")
	var counts []int
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "counter packets "); i >= 0 {
			n, _ := strconv.Atoi(strings.Fields(line[i+len("counter packets "):])[0])
			counts = append(counts, n)
		}
	}
	if len(counts) != 2 || counts[1] == 0 || counts[0] != counts[1] {
		t.Errorf("SYNs at the cloud host (clamped to %d, all): %v; want every SYN clamped\n%s", ike.DefaultTCPMSS, counts, out)
	} else {
		t.Logf("MSS clamp: %d of %d SYNs arrived with MSS %d", counts[0], counts[1], ike.DefaultTCPMSS)
	}
}
