package ike

import (
	"testing"
	"time"

	"toride/ike/charon"
)

func TestCarrier(t *testing.T) {
	views := []tunnelView{
		{netOrder: []uint64{3}, netInstalled: []int64{100}},
		{netOrder: []uint64{7}, netInstalled: []int64{5}},
	}
	if got := carrier(charon.BackendLibipsec, views); got != 1 {
		t.Errorf("libipsec: the newest lineage carries; got %d", got)
	}
	if got := carrier(charon.BackendKernel, views); got != 0 {
		t.Errorf("kernel: the first installed carries; got %d", got)
	}
	if got := carrier(charon.BackendLibipsec, []tunnelView{{}, {}}); got != -1 {
		t.Errorf("no net CHILD_SA: got %d", got)
	}
}

func TestDecide(t *testing.T) {
	now := time.Now()
	up := func(since time.Duration) tunnelView { return tunnelView{healthy: true, healthySince: now.Add(-since)} }
	down := tunnelView{}
	const hold = 30 * time.Second
	tests := []struct {
		name      string
		movedAway bool
		views     []tunnelView
		current   int
		want      *decision
	}{
		{"steady on preferred", false, []tunnelView{up(time.Hour), up(time.Hour)}, 0, nil},
		{"initial: go to preferred at once", false, []tunnelView{up(time.Second), up(time.Hour)}, 1, &decision{target: 0}},
		{"preferred dies", false, []tunnelView{down, up(time.Hour)}, 0, &decision{target: 1, failover: true}},
		{"nothing carries yet, preferred down", false, []tunnelView{down, up(time.Second)}, -1, &decision{target: 1}},
		{"both down: stay", false, []tunnelView{down, down}, 0, nil},
		{"after failover: hold down", true, []tunnelView{up(10 * time.Second), up(time.Hour)}, 1, nil},
		{"after failover: fail back", true, []tunnelView{up(hold), up(time.Hour)}, 1, &decision{target: 0, failback: true}},
		{"recovering preferred grabbed traffic during hold-down", true, []tunnelView{up(time.Second), up(time.Hour)}, 0, &decision{target: 1}},
		{"backup dies during hold-down", true, []tunnelView{up(time.Second), down}, 1, &decision{target: 0, failover: true, failback: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(now, &steering{movedAway: tc.movedAway}, tc.views, tc.current, 0, hold)
			switch {
			case got == nil && tc.want == nil:
			case got == nil || tc.want == nil || *got != *tc.want:
				t.Errorf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}
