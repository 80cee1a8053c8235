package replay

import "testing"

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
	} {
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
