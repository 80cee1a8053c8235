package replay

import (
	"math/rand/v2"
	"testing"
)

// WindowSize is the window the table tests run with: OpenVPN's, the largest in use.
const WindowSize = 1984

func TestFilter(t *testing.T) {
	f := New(WindowSize)
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
	f := New(WindowSize)
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
	f := New(WindowSize)
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

// TestWindowSizes: for every window size, small or not a multiple of the block, Accept answers what a plain set of
// the counters seen does: a counter is taken once, and only while it is at most the window below the highest one.
func TestWindowSizes(t *testing.T) {
	for _, window := range []uint64{0, 1, 31, 63, 64, 65, 127, 128, 200, 1984} {
		rng := rand.New(rand.NewPCG(window, 7))
		f := New(window)
		seen := map[uint64]bool{}
		var highest uint64
		next := uint64(0)
		for i := range 20000 {
			var n uint64
			switch r := rng.IntN(100); {
			case r < 50:
				n = next
				next++
			case r < 95:
				n = next - min(next, rng.Uint64N(window+70))
			default:
				next += rng.Uint64N(3*window + 130)
				n = next
			}
			want := !seen[n] && n+window >= highest
			if got := f.Accept(n); got != want {
				t.Fatalf("window %d, step %d: Accept(%d) = %v, want %v (highest %d)", window, i, n, got, want, highest)
			}
			if want {
				seen[n] = true
				highest = max(highest, n)
			}
		}
		f.Reset()
		if !f.Accept(0) || f.Accept(0) {
			t.Errorf("window %d: after Reset, 0 is not taken exactly once", window)
		}
	}
}

// TestWindowEdge: the counter exactly the window below the highest is the oldest one taken.
func TestWindowEdge(t *testing.T) {
	for _, window := range []uint64{63, 1984} {
		f := New(window)
		top := 10 * window
		if !f.Accept(top) {
			t.Fatalf("window %d: %d refused", window, top)
		}
		if f.Fresh(top-window-1) || f.Accept(top-window-1) {
			t.Errorf("window %d: %d, one beyond the window, taken", window, top-window-1)
		}
		if !f.Fresh(top-window) || !f.Accept(top-window) {
			t.Errorf("window %d: %d, at the window's edge, refused", window, top-window)
		}
	}
}

// BenchmarkAcceptInOrder: the common case, each counter one above the last.
func BenchmarkAcceptInOrder(b *testing.B) {
	f := New(WindowSize)
	n := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		n++
		f.Accept(n)
	}
}

// BenchmarkAcceptReordered: counters arriving in pairs swapped, and every tenth one a replay.
func BenchmarkAcceptReordered(b *testing.B) {
	f := New(WindowSize)
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
