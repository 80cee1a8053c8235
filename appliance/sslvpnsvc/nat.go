package sslvpnsvc

import (
	"context"
	"net/netip"
	"slices"

	"toride/dataplane/nft"
	"toride/sslvpn"
)

// Firewall is what the component needs of dataplane/nft: the source NAT of full-tunnel clients.
type Firewall interface {
	SetMasquerades(ctx context.Context, owner string, masqs []nft.Masquerade) error
}

// masquerades is the source NAT the servers want: the pools of full-tunnel clients (a server's, or a profile's
// with redirect-gateway) leave the box from the address of the interface they leave by, so that the Internet
// answers them; the networks the servers push (the LANs, which route the pools back to the box) and the pools
// themselves see the clients' own addresses.
func masquerades(want sslvpn.Config) []nft.Masquerade {
	var exempt, full []netip.Prefix
	add := func(list *[]netip.Prefix, ps ...netip.Prefix) {
		for _, p := range ps {
			if p.IsValid() && p.Addr().Is4() && p.Bits() > 0 && !slices.Contains(*list, p.Masked()) {
				*list = append(*list, p.Masked())
			}
		}
	}
	for _, sc := range want.Servers {
		add(&exempt, sc.Pool)
		add(&exempt, sc.Routes...)
		if sc.RedirectGateway {
			add(&full, sc.Pool)
		}
		for _, g := range sc.Groups {
			pool := g.Pool
			if !pool.IsValid() {
				pool = sc.Pool
			}
			add(&exempt, pool)
			add(&exempt, g.Routes...)
			if g.RedirectGateway {
				add(&full, pool)
			}
		}
	}
	var out []nft.Masquerade
	for _, p := range full {
		out = append(out, nft.Masquerade{Source: p, Exempt: exempt})
	}
	return out
}
