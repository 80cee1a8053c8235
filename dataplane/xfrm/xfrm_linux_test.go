package xfrm

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"toride/dataplane/probe"
	"toride/tests/lab"
)

// kernelTunnels returns Tunnels on the real kernel, in a lab namespace linked to a peer's (198.51.100.2 ↔ .1),
// with tun1 made; off a kernel with xfrm interfaces the test skips (see lab.RequireKernel).
func kernelTunnels(t *testing.T) (*Tunnels, *lab.Netns) {
	t.Helper()
	lab.Require(t)
	caps, err := probe.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lab.RequireKernel(t, caps.XFRMInterfaces, "xfrm interfaces")
	l := lab.New(t)
	ns := l.Namespace("xfrm")
	peer := l.Namespace("peer")
	l.Link(ns, "wan0", "198.51.100.2/24", peer, "wan0", "198.51.100.1/24")
	tn, err := Open("/var/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.Close)
	if err := tn.Set([]Interface{tun1}); err != nil {
		t.Fatal(err)
	}
	return tn, ns
}

// On the real kernel: Set makes the interfaces, a second Set changes nothing, an SA with the interface's if_id
// carries what is routed into the interface (and Stats counts it), and Set(nil) removes only its own interfaces.
func TestTunnelsOnTheKernel(t *testing.T) {
	tn, ns := kernelTunnels(t)
	if err := tn.Set([]Interface{tun1, tun2}); err != nil {
		t.Fatal(err)
	}
	h := ns.Handle()
	index := map[string]int{}
	for _, want := range []Interface{tun1, tun2} {
		lk, err := h.LinkByName(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		x, ok := lk.(*netlink.Xfrmi)
		if !ok || x.Ifid != want.IfID || x.MTU != want.MTU || x.Alias != Owner || x.Flags&net.FlagUp == 0 {
			t.Fatalf("%s: %T %+v", want.Name, lk, lk.Attrs())
		}
		index[want.Name] = x.Index
		addrs, _ := h.AddrList(lk, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != want.Address.String() {
			t.Errorf("%s addresses: %v", want.Name, addrs)
		}
		if rp := strings.TrimSpace(ns.MustRun("sysctl", "-n", "net.ipv4.conf."+want.Name+".rp_filter")); rp != "2" {
			t.Errorf("%s rp_filter = %s, want 2 (loose)", want.Name, rp)
		}
	}
	if err := tn.Set([]Interface{tun1, tun2}); err != nil {
		t.Fatal(err)
	}
	for name, i := range index {
		if lk, err := h.LinkByName(name); err != nil || lk.Attrs().Index != i {
			t.Errorf("a second Set re-made %s", name)
		}
	}

	// An outbound SA and policy bound to tunnel 1's if_id, as charon installs them for a route-based tunnel.
	sa := &netlink.XfrmState{Src: net.ParseIP("198.51.100.2"), Dst: net.ParseIP("198.51.100.1"), Proto: netlink.XFRM_PROTO_ESP,
		Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x1001, Reqid: 1, Ifid: int(tun1.IfID),
		Aead: &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 20), ICVLen: 128}}
	if err := h.XfrmStateAdd(sa); err != nil {
		t.Fatal(err)
	}
	_, any4, _ := net.ParseCIDR("0.0.0.0/0")
	pol := &netlink.XfrmPolicy{Src: any4, Dst: any4, Dir: netlink.XFRM_DIR_OUT, Ifid: int(tun1.IfID),
		Tmpls: []netlink.XfrmPolicyTmpl{{Src: sa.Src, Dst: sa.Dst, Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 1}}}
	if err := h.XfrmPolicyAdd(pol); err != nil {
		t.Fatal(err)
	}
	if err := tn.SetRoutes(map[netip.Prefix]string{netip.MustParsePrefix("10.99.0.0/24"): tun1.Name}); err != nil {
		t.Fatal(err)
	}
	if out := ns.MustRun("ip", "route", "show", "10.99.0.0/24"); !strings.Contains(out, "dev "+tun1.Name) || !strings.Contains(out, "proto 202") {
		t.Fatalf("the tunnel route: %q", out)
	}
	_ = ns.Ping("10.99.0.1", 3) // no answer: the peer has no SA; what counts is what left through the tunnel
	var counted uint64
	err := lab.WaitFor(lab.Within(t, 5*time.Second), 100*time.Millisecond, func() error {
		stats, err := tn.Stats()
		if err != nil {
			return lab.Permanent(err)
		}
		for _, s := range stats {
			if s.SPI == 0x1001 && s.IfID == tun1.IfID && s.Dst.String() == "198.51.100.1" {
				counted = s.Packets
			}
		}
		if counted < 3 {
			return os.ErrDeadlineExceeded
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the SA of if_id %d counted %d packets for 3 pings routed into %s: %v", tun1.IfID, counted, tun1.Name, err)
	}

	// Someone else's xfrm interface stays; Set(nil) removes ours, and never the SA or the policy.
	other := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: "xfrm-admin"}, Ifid: 77}
	if err := h.LinkAdd(other); err != nil {
		t.Fatal(err)
	}
	if err := tn.Set(nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{tun1.Name, tun2.Name} {
		if _, err := h.LinkByName(name); err == nil {
			t.Errorf("%s is still there after Set(nil)", name)
		}
	}
	if _, err := h.LinkByName("xfrm-admin"); err != nil {
		t.Error("Set(nil) removed an interface the appliance did not make")
	}
	if sas, _ := h.XfrmStateList(netlink.FAMILY_V4); len(sas) != 1 {
		t.Errorf("SAs after Set(nil): %d, want charon's 1 untouched", len(sas))
	}
	if pols, _ := h.XfrmPolicyList(netlink.FAMILY_V4); len(pols) != 1 {
		t.Errorf("policies after Set(nil): %d, want charon's 1 untouched", len(pols))
	}
}

// On the real kernel: Watch reports an SA's soft and hard expiry with its SPI and if_id, and an acquire when
// traffic is routed into a tunnel whose policy has no SA.
func TestWatchOnTheKernel(t *testing.T) {
	tn, ns := kernelTunnels(t)
	events := make(chan Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- tn.Watch(ctx, func(ev Event) { events <- ev }) }()
	defer func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the monitor subscribe before the kernel speaks

	h := ns.Handle()
	sa := &netlink.XfrmState{Src: net.ParseIP("198.51.100.2"), Dst: net.ParseIP("198.51.100.1"), Proto: netlink.XFRM_PROTO_ESP,
		Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x2002, Reqid: 4, Ifid: int(tun1.IfID),
		Aead: &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 20), ICVLen: 128},
		// Hard well after soft: a timer that fires late (an emulated CPU) past both reports only the hard expiry.
		Limits: netlink.XfrmStateLimits{TimeSoft: 1, TimeHard: 4}}
	if err := h.XfrmStateAdd(sa); err != nil {
		t.Fatal(err)
	}
	next := func(what string) Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event within 10 s", what)
		}
		return Event{}
	}
	src, dst := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.1")
	if ev := next("soft expire"); ev != (Event{Kind: SoftExpired, Src: src, Dst: dst, SPI: 0x2002, Reqid: 4, IfID: tun1.IfID}) {
		t.Fatalf("first event %+v, want the soft expiry", ev)
	}
	if ev := next("hard expire"); ev.Kind != Expired || ev.SPI != 0x2002 || ev.IfID != tun1.IfID {
		t.Fatalf("second event %+v, want the hard expiry", ev)
	}

	// A policy of the tunnel with no SA: traffic routed into the interface makes the kernel ask for one.
	_, any4, _ := net.ParseCIDR("0.0.0.0/0")
	pol := &netlink.XfrmPolicy{Src: any4, Dst: any4, Dir: netlink.XFRM_DIR_OUT, Ifid: int(tun1.IfID),
		Tmpls: []netlink.XfrmPolicyTmpl{{Src: sa.Src, Dst: sa.Dst, Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 4}}}
	if err := h.XfrmPolicyAdd(pol); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("ip", "route", "add", "10.99.0.0/24", "dev", tun1.Name)
	_ = ns.Ping("10.99.0.1", 1)
	if ev := next("acquire"); ev.Kind != Acquire || ev.Dst != dst || ev.IfID != tun1.IfID {
		t.Fatalf("event %+v, want an acquire for %s on if_id %d", ev, dst, tun1.IfID)
	}
}
