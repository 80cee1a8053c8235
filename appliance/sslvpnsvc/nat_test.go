package sslvpnsvc

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"toride/dataplane/nft"
	"toride/sslvpn"
)

// TestMasquerades: only the pools of full-tunnel clients are masqueraded (a server's, a profile's with its own
// pool or the server's), each exempting every pushed network and every pool; split tunnels alone need none.
func TestMasquerades(t *testing.T) {
	p := netip.MustParsePrefix
	split := &sslvpn.ServerConfig{Pool: p("10.8.0.0/24"), Routes: []netip.Prefix{p("10.50.0.0/24"), p("192.0.2.53/32")}}
	if got := masquerades(sslvpn.Config{Servers: []*sslvpn.ServerConfig{split}}); got != nil {
		t.Errorf("split tunnel: %v, want none", got)
	}
	full := &sslvpn.ServerConfig{Pool: p("10.9.0.0/24"), Routes: []netip.Prefix{p("10.50.0.0/24")}, RedirectGateway: true,
		Groups: []*sslvpn.GroupConfig{{Name: "road", Pool: p("10.10.0.0/24"), RedirectGateway: true},
			{Name: "lan-only", Routes: []netip.Prefix{p("10.51.0.0/24")}}}}
	exempt := []netip.Prefix{p("10.8.0.0/24"), p("10.50.0.0/24"), p("192.0.2.53/32"), p("10.9.0.0/24"), p("10.10.0.0/24"), p("10.51.0.0/24")}
	want := []nft.Masquerade{{Source: p("10.9.0.0/24"), Exempt: exempt}, {Source: p("10.10.0.0/24"), Exempt: exempt}}
	if diff := cmp.Diff(masquerades(sslvpn.Config{Servers: []*sslvpn.ServerConfig{split, full}}), want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}
