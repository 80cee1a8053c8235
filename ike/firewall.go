package ike

import (
	"maps"
	"net/netip"
	"slices"

	"toride/dataplane/nft"
)

// FirewallOwner is the owner name under which the engine's rules live in the nft table.
const FirewallOwner = "ike"

// FirewallRules returns the inbound rules a configuration needs: IKE (UDP 500, 4500) and ESP accepted from each
// tunnel's remote endpoint, and refused from anyone else. cfg should be normalized.
func FirewallRules(cfg Config) []nft.Rule {
	var peers []netip.Prefix
	seen := map[netip.Addr]bool{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Connections)) {
		c := cfg.Connections[name]
		for _, tn := range c.TunnelNames() {
			if t := c.Tunnels[tn]; t != nil && t.RemoteAddress.IsValid() && !seen[t.RemoteAddress] {
				seen[t.RemoteAddress] = true
				peers = append(peers, netip.PrefixFrom(t.RemoteAddress, t.RemoteAddress.BitLen()))
			}
		}
	}
	if len(peers) == 0 {
		return nil
	}
	ike := []uint16{500, 4500}
	return []nft.Rule{
		{Comment: "toride ike: IKE and NAT-T from configured peers", Protocol: nft.ProtoUDP, Ports: ike, Sources: peers},
		{Comment: "toride ike: ESP from configured peers", Protocol: nft.ProtoESP, Sources: peers},
		{Comment: "toride ike: IKE from anyone else", Protocol: nft.ProtoUDP, Ports: ike, Verdict: nft.Drop},
		{Comment: "toride ike: ESP from anyone else", Protocol: nft.ProtoESP, Verdict: nft.Drop},
	}
}
