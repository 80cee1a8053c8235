// Package sourceaddr names the unit a per-source limit counts: one IPv4 address, or one IPv6 /64. A /64 is what
// one subscriber, one host or one attacker usually holds: counting IPv6 addresses one by one would let a single
// machine take a limit's whole budget by picking new addresses from its prefix.
package sourceaddr

import "net/netip"

// Of returns the source a client address belongs to: the address itself for IPv4 (IPv4-mapped IPv6 included),
// its /64 for IPv6. The zero Addr gives the zero Prefix.
func Of(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
