package pool

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func newPool(t *testing.T, prefix string, topo Topology, grace time.Duration) (*Pool, *time.Time) {
	t.Helper()
	p, err := New(netip.MustParsePrefix(prefix), topo, grace)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	return p, &now
}

func TestSubnetAddresses(t *testing.T) {
	p, _ := newPool(t, "10.8.0.0/24", Subnet, time.Minute)
	if p.Server() != netip.MustParseAddr("10.8.0.1") || p.Capacity() != 253 {
		t.Fatalf("server %s capacity %d", p.Server(), p.Capacity())
	}
	l, err := p.Acquire("alice")
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr.String() != "10.8.0.2" || l.Peer.String() != "10.8.0.1" || l.Netmask.String() != "10.8.0.0/24" {
		t.Fatalf("first lease %+v", l)
	}
	var last Lease
	for i := range 252 {
		if last, err = p.Acquire(fmt.Sprint("u", i)); err != nil {
			t.Fatalf("lease %d: %v", i+2, err)
		}
	}
	if last.Addr.String() != "10.8.0.254" {
		t.Fatalf("last lease %s, want 10.8.0.254 (the broadcast address is never given)", last.Addr)
	}
	if _, err := p.Acquire("one-too-many"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("over capacity: %v", err)
	}
}

func TestNet30Addresses(t *testing.T) {
	p, _ := newPool(t, "10.8.0.0/28", Net30, time.Minute)
	if p.Capacity() != 3 {
		t.Fatalf("capacity %d, want 3 (4 /30s, one for the server)", p.Capacity())
	}
	want := []string{"10.8.0.6 10.8.0.5 10.8.0.4/30", "10.8.0.10 10.8.0.9 10.8.0.8/30", "10.8.0.14 10.8.0.13 10.8.0.12/30"}
	for i, w := range want {
		l, err := p.Acquire(fmt.Sprint("u", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s %s %s", l.Addr, l.Peer, l.Netmask); got != w {
			t.Errorf("lease %d = %s, want %s", i, got, w)
		}
	}
	if _, err := p.Acquire("x"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("over capacity: %v", err)
	}
}

func TestReconnectGetsTheSameAddressWithinGrace(t *testing.T) {
	p, now := newPool(t, "10.8.0.0/29", Subnet, 5*time.Minute) // 5 clients
	a, _ := p.Acquire("alice")
	b, _ := p.Acquire("bob")
	p.Release(a)
	*now = now.Add(4 * time.Minute)
	c, _ := p.Acquire("carol")
	if c.Addr == a.Addr {
		t.Fatal("alice's held address went to carol while a free one existed")
	}
	again, _ := p.Acquire("alice")
	if again.Addr != a.Addr {
		t.Fatalf("alice came back within the grace period and got %s, want %s", again.Addr, a.Addr)
	}
	p.Release(again)
	p.Release(b)
	*now = now.Add(6 * time.Minute)
	d, _ := p.Acquire("dave")
	if d.Addr != a.Addr {
		t.Fatalf("after the grace period the lowest address %s should be free, dave got %s", a.Addr, d.Addr)
	}
}

func TestHeldAddressesExhaustThePool(t *testing.T) {
	p, now := newPool(t, "10.8.0.0/30", Subnet, 5*time.Minute) // 1 client
	a, err := p.Acquire("alice")
	if err != nil {
		t.Fatal(err)
	}
	p.Release(a)
	_, err = p.Acquire("bob")
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "1 of them held for disconnected users for up to 5m0s") {
		t.Fatalf("bob while alice's address is held: %v", err)
	}
	back, err := p.Acquire("alice")
	if err != nil || back.Addr != a.Addr {
		t.Fatalf("alice back: %v %v", back.Addr, err)
	}
	p.Release(back)
	*now = now.Add(5*time.Minute + time.Second)
	if l, err := p.Acquire("bob"); err != nil || l.Addr != a.Addr {
		t.Fatalf("bob after the grace period: %v %v", l.Addr, err)
	}
}

func TestConcurrentAcquireNeverDuplicates(t *testing.T) {
	p, _ := newPool(t, "10.8.0.0/24", Subnet, time.Minute)
	var mu sync.Mutex
	seen := map[netip.Addr]bool{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				l, err := p.Acquire(fmt.Sprint(w, "-", i))
				if err != nil {
					continue
				}
				mu.Lock()
				if seen[l.Addr] {
					t.Errorf("%s handed out twice", l.Addr)
				}
				seen[l.Addr] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 253 || p.InUse() != 253 {
		t.Fatalf("%d distinct leases, %d in use; want 253", len(seen), p.InUse())
	}
}
