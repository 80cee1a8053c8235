package replay

import (
	"math/rand/v2"
	"testing"
)

func TestFilter(t *testing.T) {
	var f Filter
	for i, tc := range []struct {
		n    uint64
		want bool
	}{
		{1, true}, {1, false}, {3, true}, {2, true}, {2, false},
		{WindowSize + 10, true}, {9, false}, {10, true}, {10, false},
		{WindowSize + 9, true}, {WindowSize + 10, false},
		{100000, true}, {100000 - WindowSize, true}, {100000 - WindowSize - 1, false}, {99999, true},
		{1 << 40, true}, {1<<40 - 1, true}, {100000, false},
		{1<<48 - 1, true}, {1<<48 - 2, true}, {1<<48 - 1, false}, // DTLS's largest sequence numbers
	} {
		if got := f.Fresh(tc.n); got != tc.want {
			t.Errorf("step %d: Fresh(%d) = %v, want %v", i, tc.n, got, tc.want)
		}
		if got := f.Accept(tc.n); got != tc.want {
			t.Errorf("step %d: Accept(%d) = %v, want %v", i, tc.n, got, tc.want)
		}
	}
}

func TestFilterEveryCounterOnce(t *testing.T) {
	var f Filter
	// In order, then a reordered burst inside the window: each accepted exactly once.
	for n := uint64(1); n <= 5000; n++ {
		if !f.Accept(n) {
			t.Fatalf("in-order %d refused", n)
		}
	}
	for n := uint64(5000 + 64); n > 5000; n-- {
		if !f.Accept(n) || f.Accept(n) {
			t.Fatalf("reordered %d accepted wrongly", n)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { f.Accept(7777) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestFreshMatchesAccept: over random reordered, duplicated and jumping counters, Fresh answers what Accept then
// does, and never records a counter itself.
func TestFreshMatchesAccept(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var f Filter
	next := uint64(1)
	for i := range 200000 {
		var n uint64
		switch r := rng.IntN(100); {
		case r < 60:
			n = next
			next++
		case r < 95: // reordered or replayed, sometimes beyond the window
			n = next - min(next, rng.Uint64N(WindowSize+200))
		default: // a jump ahead
			next += rng.Uint64N(4 * WindowSize)
			n = next
		}
		fresh := f.Fresh(n)
		if f.Fresh(n) != fresh {
			t.Fatalf("step %d: Fresh(%d) changed its answer", i, n)
		}
		if got := f.Accept(n); got != fresh {
			t.Fatalf("step %d: Fresh(%d) = %v but Accept = %v", i, n, fresh, got)
		}
	}
}

// BenchmarkAcceptInOrder: the common case, each counter one above the last.
func BenchmarkAcceptInOrder(b *testing.B) {
	var f Filter
	n := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		n++
		f.Accept(n)
	}
}

// BenchmarkAcceptReordered: counters arriving in pairs swapped, and every tenth one a replay.
func BenchmarkAcceptReordered(b *testing.B) {
	var f Filter
	n := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		n++
		switch {
		case n%10 == 0:
			f.Accept(n - 5)
		case n%2 == 1:
			f.Accept(n + 1)
		default:
			f.Accept(n - 1)
		}
	}
}
