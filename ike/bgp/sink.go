package bgp

import (
	"context"
	"net/netip"
)

// Route is a learned prefix as it is to be installed: through the named neighbor (so through its tunnel) to the
// next hop the neighbor gave.
type Route struct {
	Prefix   netip.Prefix
	NextHop  netip.Addr
	Neighbor string // Neighbor.Name
}

// RouteSink is where the speaker puts the best path of every learned prefix. The IPsec engine implements it with
// the tunnels' xfrm interfaces; bgptest.Sink records the calls for tests.
//
// The speaker calls it from one goroutine at a time. Install replaces whatever route the sink holds for the
// prefix (the best path moved to another neighbor); Withdraw removes it (no neighbor offers it any more, a
// session dropped, or the speaker closed). A call that fails is made again on the next resync.
type RouteSink interface {
	Install(ctx context.Context, r Route) error
	Withdraw(ctx context.Context, prefix netip.Prefix) error
}
