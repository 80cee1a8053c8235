package cloudlab

import (
	"strings"
	"testing"
	"time"
)

func TestGapAround(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, base.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	every100 := func(from, to int) []int {
		var out []int
		for m := from; m <= to; m += 100 {
			out = append(out, m)
		}
		return out
	}
	t0 := base.Add(1050 * time.Millisecond)
	for _, tc := range []struct {
		name    string
		replies []int
		now     int
		gap     time.Duration
		resumed bool
	}{
		{"no outage", every100(0, 3000), 3050, 100 * time.Millisecond, true},
		{"outage then steady", append(every100(0, 1000), every100(4000, 5000)...), 5050, 3000 * time.Millisecond, true},
		// The answer already in flight at the cut arrives after t0: the outage runs from it to the recovery.
		{"in-flight answer after the cut", append(append(every100(0, 1000), 1060), every100(4000, 5000)...), 5050, 2940 * time.Millisecond, true},
		{"in-flight answer, still down", append(every100(0, 1000), 1060), 3060, 2000 * time.Millisecond, false},
		{"recovering, too few answers yet", append(every100(0, 1000), every100(4000, 4200)...), 4250, 3000 * time.Millisecond, false},
		{"steady, then silent again", append(every100(0, 1000), every100(4000, 5000)...), 6000, 3000 * time.Millisecond, false},
		{"nothing yet", nil, 100, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gap, resumed := gapAround(at(tc.replies...), t0, base.Add(time.Duration(tc.now)*time.Millisecond))
			if gap != tc.gap || resumed != tc.resumed {
				t.Errorf("gap %v resumed %v, want %v %v", gap, resumed, tc.gap, tc.resumed)
			}
		})
	}
}

func TestCarriedBy(t *testing.T) {
	start := []uint64{100, 200}
	if err := CarriedBy(start, []uint64{120, 202}, 0); err != nil {
		t.Errorf("traffic over tunnel 1 as the status says: %v", err)
	}
	if err := CarriedBy(start, []uint64{105, 201}, 0); err == nil {
		t.Error("too little traffic yet called carried")
	}
	if err := CarriedBy(start, []uint64{102, 220}, 1); err != nil {
		t.Errorf("traffic over tunnel 2 as the status says: %v", err)
	}
	if err := CarriedBy(start, []uint64{118, 210}, 0); err == nil || !strings.Contains(err.Error(), "tunnel 2 sent 10") {
		t.Errorf("traffic over both called carried by tunnel 1: %v", err)
	}
}
