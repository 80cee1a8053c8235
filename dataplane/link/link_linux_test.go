package link_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"toride/dataplane/link"
	"toride/tests/lab"
)

func openIn(t *testing.T, n *lab.Netns) *link.Links {
	t.Helper()
	ns, err := netns.GetFromName(n.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	l, err := link.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestAddressesMTUAndState(t *testing.T) {
	lb := lab.New(t)
	a := lb.Namespace("lk")
	b := lb.Namespace("peer")
	lb.Link(a, "eth0", "", b, "eth0", "192.0.2.2/24")
	l := openIn(t, a)

	p := netip.MustParsePrefix("192.0.2.1/24")
	for range 2 { // idempotent
		if err := l.AddAddress("eth0", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetMTU("eth0", 1400); err != nil {
		t.Fatal(err)
	}
	st, err := l.Get("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Up || st.MTU != 1400 || !slices.Contains(st.Addresses, p) {
		t.Fatalf("state = %+v", st)
	}
	if err := a.Ping("192.0.2.2", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.SetUp("eth0", false); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping("192.0.2.2", 1); err == nil {
		t.Fatal("ping works through a link set down")
	}
	if err := l.SetUp("eth0", true); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := l.DelAddress("eth0", p); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := l.Get("eth0"); slices.Contains(st.Addresses, p) {
		t.Fatal("address still there after DelAddress")
	}
	if _, err := l.Get("eth9"); !errors.Is(err, link.ErrNotFound) {
		t.Fatalf("Get of a missing link = %v, want ErrNotFound", err)
	}
	if err := l.AddAddress("eth9", p); !errors.Is(err, link.ErrNotFound) {
		t.Fatalf("AddAddress on a missing link = %v, want ErrNotFound", err)
	}
}

func TestWatchSeesLinksComeAndGo(t *testing.T) {
	lb := lab.New(t)
	a := lb.Namespace("w")
	b := lb.Namespace("peer")
	l := openIn(t, a)
	events := make(chan link.Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Watch(ctx, func(e link.Event) { events <- e }) }()
	defer func() { cancel(); <-done }()

	want := func(e link.Event) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case got := <-events:
				if got == e {
					return
				}
			case <-deadline:
				t.Fatalf("no event %+v within 5 s", e)
			}
		}
	}
	want(link.Event{Name: "lo", Present: true})
	lb.Link(a, "eth3", "", b, "eth0", "")
	want(link.Event{Name: "eth3", Present: true})
	b.MustRun("ip", "link", "del", "eth0")
	want(link.Event{Name: "eth3", Present: false})
}

// SyncLabelled adds and removes only the addresses carrying its label: an address someone else put on the same
// link stays through every change, and an empty list removes exactly the labelled ones.
func TestSyncLabelledOwnsOnlyItsLabel(t *testing.T) {
	lb := lab.New(t)
	n := lb.Namespace("lbl")
	l, err := link.OpenPath("/run/netns/" + n.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	other := netip.MustParsePrefix("198.51.100.9/32")
	if err := l.AddAddress("lo", other); err != nil {
		t.Fatal(err)
	}
	labelled := func() []netip.Addr {
		t.Helper()
		lo, err := n.Handle().LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := n.Handle().AddrList(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Addr
		for _, a := range addrs {
			if a.Label == "lo:test" {
				ip, _ := netip.AddrFromSlice(a.IP)
				out = append(out, ip.Unmap())
			}
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return out
	}
	a1, a2, a3 := netip.MustParseAddr("169.254.10.1"), netip.MustParseAddr("169.254.10.5"), netip.MustParseAddr("169.254.10.9")
	steps := [][]netip.Addr{{a1, a2}, {a1, a2}, {a2, a3}, nil}
	for i, want := range steps {
		if err := l.SyncLabelled("lo", "lo:test", want); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := labelled(); !slices.Equal(got, want) {
			t.Fatalf("step %d: labelled addresses %v, want %v", i, got, want)
		}
		st, err := l.Get("lo")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(st.Addresses, other) {
			t.Fatalf("step %d: the unlabelled %s was removed: %v", i, other, st.Addresses)
		}
	}
}

// TestLeasedAddress: an address put on for a lease carries the lease's lifetime, which a renewal replaces, and the
// kernel removes it by itself when the lifetime runs out.
func TestLeasedAddress(t *testing.T) {
	lb := lab.New(t)
	a := lb.Namespace("lease")
	b := lb.Namespace("peer")
	lb.Link(a, "eth0", "", b, "eth0", "192.0.2.2/24")
	l := openIn(t, a)
	p := netip.MustParsePrefix("192.0.2.10/24")
	valid := func() int {
		t.Helper()
		lk, err := a.Handle().LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := a.Handle().AddrList(lk, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			if ad.IPNet.String() == p.String() {
				return ad.ValidLft
			}
		}
		return -1
	}
	if err := l.AddLeasedAddress("eth0", p, time.Hour); err != nil {
		t.Fatal(err)
	}
	if v := valid(); v < 3590 || v > 3600 {
		t.Fatalf("valid lifetime %d s, want about 3600", v)
	}
	if err := a.Ping("192.0.2.2", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.AddLeasedAddress("eth0", p, 2*time.Second); err != nil { // a renewal, here shorter
		t.Fatal(err)
	}
	if v := valid(); v < 1 || v > 2 {
		t.Fatalf("valid lifetime after the renewal %d s, want 2", v)
	}
	if err := lab.WaitFor(lab.Within(t, 10*time.Second), 200*time.Millisecond, func() error {
		if v := valid(); v >= 0 {
			return errors.New("still there")
		}
		return nil
	}); err != nil {
		t.Fatalf("the kernel did not remove the address when its lease ran out: %v", err)
	}
}
