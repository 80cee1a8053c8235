package config

import (
	"net/netip"
	"testing"

	"toride/sslvpn/pool"
)

// TestCapacityMatchesThePool: what validation promises the admin is what the pool hands out.
func TestCapacityMatchesThePool(t *testing.T) {
	for _, pfx := range []string{"10.8.0.0/30", "10.8.0.0/28", "10.8.0.0/25", "10.8.0.0/24", "10.8.0.0/20"} {
		for _, topo := range []string{"subnet", "net30"} {
			want := Capacity(netip.MustParsePrefix(pfx), topo)
			p, err := pool.New(netip.MustParsePrefix(pfx), pool.Topology(topo), 0)
			if want == 0 {
				if err == nil {
					t.Errorf("%s %s: a pool of no client was accepted", pfx, topo)
				}
				continue
			}
			if err != nil || p.Capacity() != want {
				t.Errorf("%s %s: pool capacity %v (%v), validation says %d", pfx, topo, p, err, want)
			}
		}
	}
}
