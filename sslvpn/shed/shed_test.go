package shed_test

import (
	"net/netip"
	"slices"
	"testing"

	"toride/sslvpn/shed"
)

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := shed.SourceOf(netip.MustParseAddr(tc.a)); got != netip.MustParsePrefix(tc.b) {
			t.Errorf("SourceOf(%s) = %v, want %s", tc.a, got, tc.b)
		}
	}
	if got := shed.SourceOf(netip.Addr{}); got != (netip.Prefix{}) {
		t.Errorf("SourceOf(zero) = %v", got)
	}
}

// TestQueue: which entry gives way, step by step.
func TestQueue(t *testing.T) {
	addr := netip.MustParseAddr
	a, b, c, v6a, v6b := addr("192.0.2.1"), addr("192.0.2.2"), addr("192.0.2.3"), addr("2001:db8::1"), addr("2001:db8:0:1::2")
	v6a2 := addr("2001:db8::ffff:1") // in v6a's /64
	type step struct {
		from netip.Addr
		item string
		shed []string // what this push sheds
	}
	for _, tc := range []struct {
		name             string
		total, perSource int
		steps            []step
	}{
		{"per source: the source's own oldest", 10, 2, []step{
			{a, "a1", nil}, {b, "b1", nil}, {a, "a2", nil}, {a, "a3", []string{"a1"}}, {a, "a4", []string{"a2"}}, {b, "b2", nil},
		}},
		{"an IPv6 source is its /64", 10, 2, []step{
			{v6a, "x1", nil}, {v6b, "x2", nil}, {v6a2, "x3", nil}, {v6a, "x4", []string{"x1"}},
		}},
		{"in total: the oldest of the biggest source", 5, 3, []step{
			{a, "a1", nil}, {b, "b1", nil}, {b, "b2", nil}, {c, "c1", nil}, {b, "b3", nil},
			{c, "c2", []string{"b1"}}, // b holds 3
			{a, "a2", []string{"b2"}}, // a, b and c hold 2 each: b came to hold 2 first
			{c, "c3", []string{"c1"}}, // c and a hold 2: c came to hold 2 first
		}},
		{"in total, all equal: the source that came first", 3, 3, []step{
			{a, "a1", nil}, {b, "b1", nil}, {c, "c1", nil}, {v6a, "x1", []string{"a1"}}, {v6b, "y1", []string{"b1"}},
		}},
		{"a source holding one outlasts a churning flood of fewer sources than the bound", 6, 4, []step{
			{a, "user", nil},
			{b, "b1", nil}, {c, "c1", nil}, {b, "b2", nil}, {c, "c2", nil}, {b, "b3", nil},
			{c, "c3", []string{"b1"}}, {b, "b4", []string{"c1"}}, {c, "c4", []string{"b2"}}, {b, "b5", []string{"c2"}},
		}},
		{"bounds under 1 are 1", 0, 0, []step{{a, "a1", nil}, {b, "b1", []string{"a1"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := shed.NewQueue[string](tc.total, tc.perSource, nil)
			for i, st := range tc.steps {
				var got []string
				q.Push(st.from, st.item, func(s string) { got = append(got, s) })
				if !slices.Equal(got, st.shed) {
					t.Fatalf("step %d (%s): shed %v, want %v", i, st.item, got, st.shed)
				}
				if q.Len() > max(tc.total, 1) {
					t.Fatalf("step %d: %d entries over %d", i, q.Len(), tc.total)
				}
			}
		})
	}
}

// Entries that went another way are dropped without being shed; removed ones make room; remove twice is a no-op.
func TestQueueGoneAndRemoved(t *testing.T) {
	gone := map[string]bool{}
	q := shed.NewQueue(3, 2, func(s string) bool { return gone[s] })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var got []string
	f := func(s string) { got = append(got, s) }
	q.Push(a, "a1", f)
	q.Push(a, "a2", f)
	gone["a2"] = true
	q.Push(a, "a3", f) // a is full: a2 is gone, so a1 stays
	if len(got) != 0 || q.Len() != 2 {
		t.Fatalf("shed %v, %d entries", got, q.Len())
	}
	e := q.Push(b, "b1", f)
	q.Remove(e)
	q.Remove(e)
	q.Remove(nil)
	q.Push(b, "b2", f)
	if len(got) != 0 || q.Len() != 3 {
		t.Fatalf("shed %v, %d entries", got, q.Len())
	}
	q.Push(b, "b3", f) // full: the biggest is a (a1, a3)
	if !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("shed %v", got)
	}
	gone["a3"], gone["b2"] = true, true
	q.Prune()
	if q.Len() != 1 {
		t.Fatalf("after prune: %d entries", q.Len())
	}
}

// An entry shed by a push is out of the queue: removing it later, as its owner does when it ends, changes nothing.
func TestQueueRemoveShed(t *testing.T) {
	q := shed.NewQueue[string](2, 2, nil)
	a := netip.MustParseAddr("192.0.2.1")
	var shedEntry *shed.Entry[string]
	shedEntry = q.Push(a, "a1", func(string) {})
	q.Push(a, "a2", func(string) {})
	q.Push(a, "a3", func(string) {})
	q.Remove(shedEntry)
	if q.Len() != 2 {
		t.Fatalf("%d entries, want 2", q.Len())
	}
}

// At the total bound a push looks at the biggest source's entries only, not the whole queue: it runs under the
// caller's mutex at every newcomer once a flood has filled the table.
func TestQueuePushAtBoundIsCheap(t *testing.T) {
	looked := 0
	q := shed.NewQueue(4096, 8, func(int) bool { looked++; return false })
	for i := 0; i < 20000; i++ {
		looked = 0
		q.Push(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), i, func(int) {})
		if looked > 2*8 {
			t.Fatalf("push %d looked at %d entries", i, looked)
		}
	}
	if q.Len() != 4096 {
		t.Fatalf("%d entries", q.Len())
	}
}
