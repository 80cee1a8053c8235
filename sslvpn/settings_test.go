package sslvpn

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"toride/sslvpn/pool"
)

// TestCapacityMatchesThePool: what validation promises the admin is what the pool hands out.
func TestCapacityMatchesThePool(t *testing.T) {
	for _, pfx := range []string{"10.8.0.0/30", "10.8.0.0/28", "10.8.0.0/25", "10.8.0.0/24", "10.8.0.0/20"} {
		for _, topo := range []pool.Topology{pool.Subnet, pool.Net30} {
			want := Capacity(netip.MustParsePrefix(pfx), topo)
			p, err := pool.New(netip.MustParsePrefix(pfx), topo, 0)
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

// The derived defaults: the flavor's limit, two sessions per user (fewer when the limit is lower), every cipher.
func TestServerDefaults(t *testing.T) {
	s := &ServerSettings{Flavor: FlavorLarge}
	s.FillDefaults()
	if s.MaxSessions != 255 || s.MaxPerUser != DefaultUserSessions || len(s.Ciphers) != 5 || s.Topology != pool.Subnet ||
		s.OpenVPN.TCPPort != 443 || s.OpenVPN.UDPPort != 1194 || s.OpenVPN.Auth != "sha1" || s.AnyConnect.Port != 443 ||
		s.AddressGrace != 300 || s.IdleTimeout != 1800 || s.SessionTimeout != 86400 {
		t.Errorf("defaults: %+v", s)
	}
	if s.LimitName() != "flavor large" {
		t.Errorf("limit name %q", s.LimitName())
	}
	one := &ServerSettings{MaxSessions: 1}
	one.FillDefaults()
	if one.MaxPerUser != 1 || one.LimitName() != "max-sessions 1" {
		t.Errorf("max-sessions 1: per user %d, limit %q", one.MaxPerUser, one.LimitName())
	}
}

func TestServerConfig(t *testing.T) {
	s := &ServerSettings{Pool: netip.MustParsePrefix("10.8.0.0/24"), DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Ciphers: []Cipher{CHACHA20POLY1305, AES128CBC}, OpenVPN: OpenVPNSettings{Auth: "sha256"},
		AnyConnect: AnyConnectSettings{Groups: map[string]*GroupSettings{"b": {}, "a": {LocalNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/25")}}}}}
	s.FillDefaults()
	svc := &ServiceSettings{LocalNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, ExternalAddress: netip.MustParseAddr("198.51.100.1")}
	sc := s.ServerConfig("main", svc, false)
	if sc.ListenAddr.IsValid() || sc.IdleTimeout != 1800*time.Second || sc.AddressHold != 300*time.Second || sc.LimitName != "flavor small" {
		t.Errorf("server config: %+v", sc)
	}
	if got := fmt.Sprint(sc.Routes); got != "[10.1.0.0/24 192.0.2.53/32]" {
		t.Errorf("routes %s", got)
	}
	if got := fmt.Sprint(sc.OpenVPN.Ciphers, " ", sc.OpenVPN.Auth); got != "[CHACHA20-POLY1305 AES-128-CBC] SHA256" {
		t.Errorf("openvpn %s", got)
	}
	if len(sc.Groups) != 2 || sc.Groups[0].Name != "a" || fmt.Sprint(sc.Groups[0].Routes) != "[10.1.0.0/25 192.0.2.53/32]" {
		t.Errorf("groups %+v", sc.Groups)
	}
	if s.ServerConfig("main", svc, true).ListenAddr != svc.ExternalAddress {
		t.Error("the service's own address is not listened on")
	}
}
