package datapath

import (
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
)

// Reach is the set of destinations a session may send to: the networks it was given (pushed routes, its name
// servers, everything for a full tunnel), less the networks it must never reach through the tunnel (the client
// pools, unless client-to-client traffic is allowed). The most specific network decides, so a host given inside a
// denied network (the server's own tunnel address in its pool) is reachable. A Reach is immutable once made: a
// change of configuration makes a new one and swaps it into live sessions (Uplink.SetReach). Lookups allocate
// nothing.
type Reach struct {
	table bart.Table[bool]
	desc  string
}

// NewReach returns the Reach of allow less deny.
func NewReach(allow, deny []netip.Prefix) *Reach {
	r := &Reach{desc: fmt.Sprint(allow)}
	for _, p := range deny {
		r.table.Insert(p.Masked(), false)
	}
	for _, p := range allow {
		r.table.Insert(p.Masked(), true) // allow wins where both name the same network
	}
	if len(deny) > 0 {
		r.desc += " less " + fmt.Sprint(deny)
	}
	return r
}

// Contains reports whether a session with this Reach may send to a.
func (r *Reach) Contains(a netip.Addr) bool {
	ok, found := r.table.Lookup(a)
	return found && ok
}

// String lists the allowed and denied networks, for logs.
func (r *Reach) String() string { return r.desc }
