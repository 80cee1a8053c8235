package datapath_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"toride/dataplane/link"
	"toride/dataplane/tun"
	"toride/sslvpn/datapath"
	"toride/sslvpn/internal/icmptest"
	"toride/tests/lab"
)

// echoPeer answers ICMP echo requests to its address through its uplink, as a VPN client would.
type echoPeer struct {
	addr    netip.Addr
	up      *datapath.Uplink
	replies chan []byte
}

func (e *echoPeer) SendPacket(pkt []byte) bool {
	if r, ok := icmptest.EchoReply(pkt, e.addr); ok {
		e.replies <- r
	}
	return true
}

func TestRealTUN(t *testing.T) {
	l := lab.New(t, "ping")
	ns := l.Namespace("tun")
	dev, err := tun.Kernel{Netns: "/run/netns/" + ns.Name}.Create("sslvpn0", 1420)
	if err != nil {
		t.Fatal(err)
	}
	d, err := datapath.New(dev, datapath.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, _ := netns.GetFromName(ns.Name)
	defer h.Close()
	links, err := link.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer links.Close()
	if err := links.AddAddress("sslvpn0", netip.MustParsePrefix("10.8.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := links.SetUp("sslvpn0", true); err != nil {
		t.Fatal(err)
	}
	peer := &echoPeer{addr: netip.MustParseAddr("10.8.0.2"), replies: make(chan []byte, 16)}
	peer.up, err = d.Attach(peer.addr, peer, datapath.NewReach([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, nil))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // the client's send path: its own goroutine, as in a session
		for {
			select {
			case r := <-peer.replies:
				_ = peer.up.WritePacket(r)
				peer.up.Flush()
			case <-done:
				return
			}
		}
	}()
	if err := ns.Ping("10.8.0.2", 3); err != nil {
		t.Fatalf("ping through the TUN datapath: %v\nstats %+v", err, d.Stats())
	}
	if err := ns.Ping("10.8.0.3", 1); err == nil {
		t.Fatal("an address without a session answered")
	}
	st := d.Stats()
	if st.ToClients < 3 || st.FromClients < 3 || st.NoRoute < 1 {
		t.Fatalf("stats %+v", st)
	}
	d.Close()
	if out := ns.MustRun("ip", "link"); strings.Contains(out, "sslvpn0") {
		t.Fatal("the TUN device outlived Close")
	}
}
