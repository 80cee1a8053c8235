package anyconnect

import (
	"net/netip"
	"slices"
	"testing"
)

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := sourceOf(netip.MustParseAddr(tc.a)); got != netip.MustParsePrefix(tc.b) {
			t.Errorf("sourceOf(%s) = %v, want %s", tc.a, got, tc.b)
		}
	}
	if got := sourceOf(netip.Addr{}); got != (netip.Prefix{}) {
		t.Errorf("sourceOf(zero) = %v", got)
	}
}

// TestShedQueue: which entry gives way, step by step.
func TestShedQueue(t *testing.T) {
	src := func(s string) netip.Prefix { return sourceOf(netip.MustParseAddr(s)) }
	a, b, c, v6a, v6b := src("192.0.2.1"), src("192.0.2.2"), src("192.0.2.3"), src("2001:db8::1"), src("2001:db8::2")
	type step struct {
		src  netip.Prefix
		item string
		shed []string // what this push sheds
	}
	for _, tc := range []struct {
		name           string
		max, perSource int
		steps          []step
	}{
		{"per source: the source's own oldest", 10, 2, []step{
			{a, "a1", nil}, {b, "b1", nil}, {a, "a2", nil}, {a, "a3", []string{"a1"}}, {a, "a4", []string{"a2"}}, {b, "b2", nil},
		}},
		{"an IPv6 source is its /64", 10, 2, []step{
			{v6a, "x1", nil}, {v6b, "x2", nil}, {v6a, "x3", []string{"x1"}},
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newShedQueue[string](tc.max, tc.perSource, nil)
			for i, st := range tc.steps {
				var shed []string
				q.push(st.src, st.item, func(s string) { shed = append(shed, s) })
				if !slices.Equal(shed, st.shed) {
					t.Fatalf("step %d (%s): shed %v, want %v", i, st.item, shed, st.shed)
				}
				if q.len() > tc.max {
					t.Fatalf("step %d: %d entries over %d", i, q.len(), tc.max)
				}
			}
		})
	}
}

// Entries that went another way are dropped without being shed; removed ones make room; remove twice is a no-op.
func TestShedQueueGoneAndRemoved(t *testing.T) {
	gone := map[string]bool{}
	q := newShedQueue(3, 2, func(s string) bool { return gone[s] })
	a, b := sourceOf(netip.MustParseAddr("192.0.2.1")), sourceOf(netip.MustParseAddr("192.0.2.2"))
	var shed []string
	f := func(s string) { shed = append(shed, s) }
	q.push(a, "a1", f)
	q.push(a, "a2", f)
	gone["a2"] = true
	q.push(a, "a3", f) // a is full: a2 is gone, so a1 stays
	if len(shed) != 0 || q.len() != 2 {
		t.Fatalf("shed %v, %d entries", shed, q.len())
	}
	e := q.push(b, "b1", f)
	q.remove(e)
	q.remove(e)
	q.push(b, "b2", f)
	if len(shed) != 0 || q.len() != 3 {
		t.Fatalf("shed %v, %d entries", shed, q.len())
	}
	q.push(b, "b3", f) // full: the biggest is a (a1, a3)
	if !slices.Equal(shed, []string{"a1"}) {
		t.Fatalf("shed %v", shed)
	}
	gone["a3"], gone["b2"] = true, true
	q.prune()
	if q.len() != 1 {
		t.Fatalf("after prune: %d entries", q.len())
	}
}

// At the total bound a push looks at the biggest source's entries only, not the whole queue: it runs under the
// server's mutex at every login once a flood has filled the table.
func TestShedQueuePushAtBoundIsCheap(t *testing.T) {
	looked := 0
	q := newShedQueue(4096, 8, func(int) bool { looked++; return false })
	for i := 0; i < 20000; i++ {
		looked = 0
		q.push(sourceOf(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})), i, func(int) {})
		if looked > 2*8 {
			t.Fatalf("push %d looked at %d entries", i, looked)
		}
	}
	if q.len() != 4096 {
		t.Fatalf("%d entries", q.len())
	}
}
