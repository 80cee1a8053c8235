package config

import (
	"strings"
	"testing"

	"toride/ike"
)

func TestIPsecValidationSpeaksConfigurationPaths(t *testing.T) {
	c := &Config{}
	if err := c.ParseCommands(`
set ipsec connections aws local-network 10.50.0.0/24
set ipsec connections aws remote-network 172.31.0.0/16
set ipsec connections aws tunnels tunnel1 local-address 198.51.100.10
set ipsec connections aws tunnels tunnel1 remote-address 203.0.113.11
set ipsec connections aws tunnels tunnel1 pre-shared-key 0startswithzero
set ipsec connections aws tunnels tunnel1 inside-cidr 169.254.169.252/30
set ipsec connections aws tunnels tunnel2 local-address 198.51.100.10
set ipsec connections aws tunnels tunnel2 remote-address 203.0.113.12
set ipsec connections aws tunnels tunnel2 pre-shared-key short
set ipsec connections aws tunnels tunnel2 inside-cidr 169.254.12.0/29
set ipsec connections aws tunnels tunnel2 esp lifetime 30000
set ipsec connections aws tunnels tunnel2 esp dh-group 3
set sslvpn servers main pool 10.50.0.0/25
`); err != nil {
		t.Fatal(err)
	}
	ps := Validate(c.WithDefaults())
	got := map[string]string{}
	for _, p := range ps {
		got[p.Path] = p.String()
		if strings.Contains(p.String(), "0startswithzero") || strings.Contains(p.String(), "short") && p.Path == "ipsec.connections.aws.tunnels.tunnel2.pre-shared-key" {
			t.Errorf("a pre-shared key leaked into a problem: %s", p)
		}
	}
	for _, path := range []string{
		"ipsec.connections.aws.tunnels.tunnel1.pre-shared-key",
		"ipsec.connections.aws.tunnels.tunnel1.inside-cidr",
		"ipsec.connections.aws.tunnels.tunnel2.pre-shared-key",
		"ipsec.connections.aws.tunnels.tunnel2.inside-cidr",
		"ipsec.connections.aws.tunnels.tunnel2.esp.lifetime",
		"ipsec.connections.aws.tunnels.tunnel2.esp.dh-group",
	} {
		if got[path] == "" {
			t.Errorf("no problem reported at %s; got:\n%s", path, ps.Error())
		}
	}
	for _, p := range ps {
		if p.Fix == "" {
			t.Errorf("%s has no fix", p.Path)
		}
	}
}

// TestProbeTimeoutDefault: an unset probe timeout is 1 s whatever the interval (requests overlap), so an interval
// set alone, long or short, commits; a timeout of more than 100 intervals is refused.
func TestProbeTimeoutDefault(t *testing.T) {
	const conn = `
set ipsec connections aws local-network 10.50.0.0/24
set ipsec connections aws remote-network 172.31.0.0/16
set ipsec connections aws tunnels tunnel1 local-address 198.51.100.10
set ipsec connections aws tunnels tunnel1 remote-address 203.0.113.11
set ipsec connections aws tunnels tunnel1 pre-shared-key Good.psk_one_2345
set ipsec connections aws tunnels tunnel1 inside-cidr 169.254.10.0/30
`
	for _, tc := range []struct {
		interval string
		want     ike.Duration
	}{
		{"", ike.Seconds(1)},
		{"set ipsec connections aws keepalive interval 7", ike.Seconds(1)},
		{"set ipsec connections aws keepalive interval 0.1", ike.Seconds(1)},
	} {
		e := mustParse(t, conn+tc.interval).WithDefaults()
		if got := e.IPsec.Connections["aws"].Keepalive.Timeout; got != tc.want {
			t.Errorf("%q: timeout %s, want %s", tc.interval, got, tc.want)
		}
		if ps := Validate(e); ps != nil {
			t.Errorf("%q: %v", tc.interval, ps)
		}
	}
	e := mustParse(t, conn+"set ipsec connections aws keepalive interval 0.1\nset ipsec connections aws keepalive timeout 10.5").WithDefaults()
	if ps := Validate(e); len(ps) != 1 || !strings.Contains(ps[0].String(), "ipsec.connections.aws.keepalive.timeout") {
		t.Errorf("a timeout of 105 intervals: %v", ps)
	}
}
