package link_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

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
