package bgp

import (
	"net/netip"
	"slices"
)

// plan is what Set changes to go from one (defaulted, valid) Config to the next.
type plan struct {
	// rebuild: the ASN, router ID or address families changed, which gobgp only takes at start: a new instance
	// gets the whole configuration.
	rebuild bool
	// add and remove are sessions, keyed by peer address; a session whose parameters changed is in both.
	add, remove []Neighbor
	// policy: a local preference, prepend or name changed (or a neighbor came or went): the import and export
	// policies are replaced and the sessions soft-reset.
	policy             bool
	announce, withdraw []netip.Prefix
}

func (p plan) empty() bool {
	return !p.rebuild && len(p.add) == 0 && len(p.remove) == 0 && !p.policy && len(p.announce) == 0 && len(p.withdraw) == 0
}

// instanceKey is what only a new gobgp instance can change.
type instanceKey struct {
	asn        uint32
	routerID   netip.Addr
	ipv4, ipv6 bool // families the listener serves
}

func keyOf(c Config) instanceKey {
	k := instanceKey{asn: c.LocalASN, routerID: c.RouterID}
	for _, n := range c.Neighbors {
		if n.PeerAddress.Is4() {
			k.ipv4 = true
		} else {
			k.ipv6 = true
		}
	}
	return k
}

// sessionEqual reports whether two neighbors' sessions are the same (a difference needs a new session).
func sessionEqual(a, b Neighbor) bool {
	return a.LocalAddress == b.LocalAddress && a.PeerAddress == b.PeerAddress && a.PeerASN == b.PeerASN &&
		a.HoldTime == b.HoldTime && a.Password == b.Password
}

// policyEqual reports whether two neighbors get the same policy statements.
func policyEqual(a, b Neighbor) bool {
	return a.Name == b.Name && a.LocalPreference == b.LocalPreference && a.Prepend == b.Prepend
}

// diff computes the plan from old to next. With rebuild set, add holds every neighbor and announce every network
// of next, as for an empty old.
func diff(old, next Config) plan {
	if keyOf(old) != keyOf(next) {
		old = Config{}
		p := diffFrom(old, next)
		p.rebuild = true
		return p
	}
	return diffFrom(old, next)
}

func diffFrom(old, next Config) plan {
	var p plan
	before := map[netip.Addr]Neighbor{}
	for _, n := range old.Neighbors {
		before[n.PeerAddress] = n
	}
	after := map[netip.Addr]Neighbor{}
	for _, n := range next.Neighbors {
		after[n.PeerAddress] = n
		o, ok := before[n.PeerAddress]
		switch {
		case !ok:
			p.add = append(p.add, n)
			p.policy = true
		case !sessionEqual(o, n):
			p.remove = append(p.remove, o)
			p.add = append(p.add, n)
		}
		if ok && !policyEqual(o, n) {
			p.policy = true
		}
	}
	for _, o := range old.Neighbors {
		if _, ok := after[o.PeerAddress]; !ok {
			p.remove = append(p.remove, o)
			p.policy = true
		}
	}
	for _, n := range next.Networks {
		if !slices.Contains(old.Networks, n) {
			p.announce = append(p.announce, n)
		}
	}
	for _, o := range old.Networks {
		if !slices.Contains(next.Networks, o) {
			p.withdraw = append(p.withdraw, o)
		}
	}
	return p
}
