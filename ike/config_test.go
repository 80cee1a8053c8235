package ike

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"toride/ike/charon"
)

func goodConfig() Config {
	return Config{Connections: []Connection{{
		Name:           "aws-tokyo",
		LocalNetworks:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		RemoteNetworks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")},
		Tunnels: []Tunnel{
			{LocalAddress: netip.MustParseAddr("198.51.100.2"), RemoteAddress: netip.MustParseAddr("203.0.113.10"),
				PSK: "Good.psk_one_2345", InsideCIDR: netip.MustParsePrefix("169.254.10.0/30")},
			{LocalAddress: netip.MustParseAddr("198.51.100.2"), RemoteAddress: netip.MustParseAddr("203.0.113.20"),
				PSK: "Good.psk_two_2345", InsideCIDR: netip.MustParsePrefix("169.254.11.0/30")},
		},
	}}}
}

func TestValidateAcceptsGoodConfig(t *testing.T) {
	if err := goodConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

// Each case breaks one rule; Validate must name the field and the rule, and say how to fix it.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Connection)
		field  string
		want   string
	}{
		{"short psk", func(c *Connection) { c.Tunnels[0].PSK = "short" }, "connections[0].tunnels[0].psk", "8–64 characters"},
		{"psk charset", func(c *Connection) { c.Tunnels[0].PSK = "has-dash-and space" }, "connections[0].tunnels[0].psk", "letters, digits"},
		{"psk leading zero", func(c *Connection) { c.Tunnels[1].PSK = "0startsWithZero" }, "connections[0].tunnels[1].psk", "start with '0'"},
		{"psk long", func(c *Connection) { c.Tunnels[0].PSK = strings.Repeat("a", 65) }, "connections[0].tunnels[0].psk", "8–64"},
		{"inside not /30", func(c *Connection) { c.Tunnels[0].InsideCIDR = netip.MustParsePrefix("169.254.10.0/29") }, "connections[0].tunnels[0].inside_cidr", "/30 inside 169.254.0.0/16"},
		{"inside outside link-local", func(c *Connection) { c.Tunnels[0].InsideCIDR = netip.MustParsePrefix("10.9.9.0/30") }, "connections[0].tunnels[0].inside_cidr", "169.254.0.0/16"},
		{"inside reserved", func(c *Connection) { c.Tunnels[0].InsideCIDR = netip.MustParsePrefix("169.254.5.0/30") }, "connections[0].tunnels[0].inside_cidr", "reserves 169.254.5.0/30"},
		{"inside reserved 169.252", func(c *Connection) { c.Tunnels[1].InsideCIDR = netip.MustParsePrefix("169.254.169.252/30") }, "connections[0].tunnels[1].inside_cidr", "reserves"},
		{"inside duplicate", func(c *Connection) { c.Tunnels[1].InsideCIDR = c.Tunnels[0].InsideCIDR }, "connections[0].tunnels[1].inside_cidr", "already uses"},
		{"phase 2 lifetime", func(c *Connection) {
			c.Tunnels[0].Phase1.Lifetime = 3600 * time.Second
			c.Tunnels[0].Phase2.Lifetime = 3600 * time.Second
		}, "connections[0].tunnels[0].phase2.lifetime", "shorter than the phase 1"},
		{"bad encryption", func(c *Connection) { c.Tunnels[0].Phase1.Encryption = []Encryption{"3DES"} }, "connections[0].tunnels[0].phase1.encryption[0]", "unsupported encryption"},
		{"bad dh", func(c *Connection) { c.Tunnels[0].Phase2.DHGroups = []int{1} }, "connections[0].tunnels[0].phase2.dh_groups[0]", "Diffie-Hellman"},
		{"ikev1 gcm", func(c *Connection) {
			c.Tunnels[0].IKEVersion = 1
			c.Tunnels[0].Phase1.Encryption = []Encryption{AES128GCM16}
		}, "connections[0].tunnels[0].phase1.encryption", "IKEv1 cannot"},
		{"ikev1 many networks", func(c *Connection) {
			c.Tunnels[0].IKEVersion = 1
			c.LocalNetworks = append(c.LocalNetworks, netip.MustParsePrefix("10.3.0.0/16"))
		}, "connections[0].tunnels[0].ike_version", "one local and one remote"},
		{"no remote networks", func(c *Connection) { c.RemoteNetworks = nil }, "connections[0].remote_networks", "static routing needs"},
		{"overlap", func(c *Connection) { c.RemoteNetworks = []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")} }, "connections[0].local_networks[0]", "overlaps remote"},
		{"bad name", func(c *Connection) { c.Name = "Bad Name" }, "connections[0].name", "[a-z0-9-]"},
		{"no tunnels", func(c *Connection) { c.Tunnels = nil }, "connections[0].tunnels", "one or two"},
		{"same peer twice", func(c *Connection) { c.Tunnels[1].RemoteAddress = c.Tunnels[0].RemoteAddress }, "connections[0].tunnels[1].remote_address", "already uses"},
		{"bgp without asn", func(c *Connection) { c.Routing.Mode = RoutingBGP }, "connections[0].routing.local_asn", "ASN"},
		{"replay window", func(c *Connection) { c.Tunnels[0].ReplayWindow = 10 }, "connections[0].tunnels[0].replay_window", "64–2048"},
		{"dpd action", func(c *Connection) { c.Tunnels[0].DPD.Action = "explode" }, "connections[0].tunnels[0].dpd.action", "unknown DPD action"},
		{"probe target", func(c *Connection) { c.Tunnels[0].KeepaliveTarget = netip.MustParseAddr("192.0.2.99") }, "connections[0].tunnels[0].keepalive_target", "remote networks"},
		{"keepalive", func(c *Connection) { c.Keepalive.Interval = time.Millisecond }, "connections[0].keepalive.interval", "100ms–5m"},
		{"preferred", func(c *Connection) { c.Failover.Preferred = 2 }, "connections[0].failover.preferred", "no such tunnel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := goodConfig()
			tc.change(&cfg.Connections[0])
			err := cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err is %T", err)
			}
			i := slices.IndexFunc(ve.Errors, func(fe *FieldError) bool { return fe.Field == tc.field })
			if i < 0 {
				t.Fatalf("no error for %s in:\n%v", tc.field, err)
			}
			fe := ve.Errors[i]
			if !strings.Contains(fe.Problem, tc.want) || fe.Fix == "" || fe.Value == "" {
				t.Errorf("error %+v: want problem containing %q, a value and a fix", fe, tc.want)
			}
			for _, psk := range []string{"Good.psk_one_2345", "0startsWithZero", "has-dash-and space"} {
				if strings.Contains(err.Error(), psk) {
					t.Errorf("error leaks a pre-shared key: %v", err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := goodConfig()
	cfg.Connections[0].Tunnels[0].PSK = "bad"
	cfg.Connections[0].Tunnels[1].InsideCIDR = netip.MustParsePrefix("169.254.0.0/30")
	cfg.Connections = append(cfg.Connections, cfg.Connections[0]) // duplicate name and peers
	var ve *ValidationError
	if !errors.As(cfg.Validate(), &ve) {
		t.Fatal("want a ValidationError")
	}
	fields := map[string]bool{}
	for _, fe := range ve.Errors {
		fields[fe.Field] = true
	}
	for _, f := range []string{"connections[0].tunnels[0].psk", "connections[0].tunnels[1].inside_cidr",
		"connections[1].name", "connections[1].tunnels[0].remote_address"} {
		if !fields[f] {
			t.Errorf("missing an error for %s; got %v", f, ve)
		}
	}
}

func TestValidateReservedPrefixes(t *testing.T) {
	err := goodConfig().ValidateWith(ValidateOptions{Reserved: []NamedPrefix{
		{Name: "sslvpn.pool", Prefix: netip.MustParsePrefix("10.1.200.0/24")},
	}})
	if err == nil || !strings.Contains(err.Error(), "overlaps sslvpn.pool 10.1.200.0/24") {
		t.Fatalf("err = %v", err)
	}
}

func TestNormalizeDefaults(t *testing.T) {
	n := goodConfig().Normalize()
	c, tun := n.Connections[0], n.Connections[0].Tunnels[0]
	if tun.IKEVersion != 2 || tun.Phase1.Lifetime != 28800*time.Second || tun.Phase2.Lifetime != 3600*time.Second ||
		tun.ReplayWindow != 1024 || tun.RekeyMargin != 540*time.Second || tun.DPD.Action != DPDRestart ||
		tun.LocalID != "198.51.100.2" || tun.KeepaliveTarget != netip.MustParseAddr("169.254.10.1") {
		t.Errorf("tunnel defaults: %+v", tun)
	}
	if c.StartupAction != StartupStart || c.Keepalive.Interval != 5*time.Second || c.Failover.HoldDown != 30*time.Second {
		t.Errorf("connection defaults: %+v", c)
	}
	// Normalize must not share slices with its input.
	orig := goodConfig()
	n2 := orig.Normalize()
	n2.Connections[0].LocalNetworks[0] = netip.MustParsePrefix("10.9.0.0/16")
	if orig.Connections[0].LocalNetworks[0] == n2.Connections[0].LocalNetworks[0] {
		t.Error("Normalize aliases LocalNetworks")
	}
}

func TestInsideAddresses(t *testing.T) {
	l, r, ok := Tunnel{InsideCIDR: netip.MustParsePrefix("169.254.44.240/30")}.InsideAddresses()
	if !ok || l != netip.MustParseAddr("169.254.44.242") || r != netip.MustParseAddr("169.254.44.241") {
		t.Errorf("got %s %s %v", l, r, ok)
	}
	if _, _, ok := (Tunnel{InsideCIDR: netip.MustParsePrefix("169.254.44.240/29")}).InsideAddresses(); ok {
		t.Error("a /29 is not a tunnel's inside CIDR")
	}
}

func TestPlan(t *testing.T) {
	cfg := goodConfig()
	cfg.Connections[0].Tunnels[0].Phase1 = Phase{Encryption: []Encryption{AES256, AES128GCM16}, Integrity: []Integrity{SHA2256, SHA1}, DHGroups: []int{14, 19}}
	cfg.Connections[0].Tunnels[0].Phase2 = Phase{Encryption: []Encryption{AES128, AES256GCM16}, Integrity: []Integrity{SHA1}, DHGroups: []int{2}}
	cfg.Connections[0].Tunnels[1].IKEVersion = 1
	cfg.Connections[0].Tunnels[1].DisablePFS = true
	plans := plan(cfg.Normalize(), charon.BackendLibipsec)
	t1, t2 := plans[0].tunnels[0], plans[0].tunnels[1]

	if diff := cmp.Diff(t1.ikeConn.Proposals, []string{"aes256-sha256-sha1-modp2048-ecp256", "aes128gcm16-prfsha256-prfsha1-modp2048-ecp256"}); diff != "" {
		t.Errorf("IKE proposals (-got +want):\n%s", diff)
	}
	net := t1.ikeConn.Children["aws-tokyo-t1-net"]
	if diff := cmp.Diff(net.ESPProposals, []string{"aes128-sha1-modp1024", "aes256gcm16-modp1024"}); diff != "" {
		t.Errorf("ESP proposals (-got +want):\n%s", diff)
	}
	// IKEv2: one CHILD_SA with the LAN and the inside /32 selectors; unique marks on libipsec.
	if t1.netChild != t1.probeChild || len(t1.ikeConn.Children) != 1 ||
		!slices.Equal(net.LocalTS, []string{"10.1.0.0/16", "169.254.10.2/32"}) ||
		!slices.Equal(net.RemoteTS, []string{"10.2.0.0/16", "169.254.10.1/32"}) || net.MarkOut != "%unique" {
		t.Errorf("IKEv2 child: %+v", net)
	}
	if net.RekeyTime != "3060s" || net.LifeTime != "3600s" || net.RandTime != "540s" || net.ReplayWindow != 1024 ||
		net.StartAction != "none" || net.DPDAction != "restart" {
		t.Errorf("IKEv2 child timers: %+v", net)
	}
	if t1.ikeConn.Version != "2" || t1.ikeConn.RekeyTime != "28260s" || t1.ikeConn.Keyingtries != 0 ||
		t1.ikeConn.Local.ID != "198.51.100.2" || t1.ikeConn.Remote.ID != "203.0.113.10" {
		t.Errorf("IKE conn: %+v", t1.ikeConn)
	}
	// IKEv1: a probe CHILD_SA besides the LAN one; re-authentication instead of rekeying; no PFS.
	if t2.netChild == t2.probeChild || len(t2.ikeConn.Children) != 2 || t2.ikeConn.ReauthTime != "28260s" ||
		t2.ikeConn.DPDTimeout != "30s" {
		t.Errorf("IKEv1 plan: %+v", t2)
	}
	if p := t2.ikeConn.Children["aws-tokyo-t2-probe"]; !slices.Equal(p.ESPProposals, []string{"aes256-aes128-sha256-sha1"}) ||
		p.MarkOut != "" {
		t.Errorf("IKEv1 probe child: %+v", p)
	}
	if t2.secret.ID != "toride-aws-tokyo-t2" || t2.secret.Data != "Good.psk_two_2345" ||
		!slices.Equal(t2.secret.Owners, []string{"198.51.100.2", "203.0.113.20"}) {
		t.Errorf("secret: %+v", t2.secret)
	}
	// Same config, same hash; any change, another hash. No marks on the kernel backend.
	again := plan(cfg.Normalize(), charon.BackendLibipsec)
	if again[0].tunnels[0].hash != t1.hash {
		t.Error("hash is not stable")
	}
	cfg.Connections[0].Tunnels[0].PSK = "Other.psk_12345"
	if plan(cfg.Normalize(), charon.BackendLibipsec)[0].tunnels[0].hash == t1.hash {
		t.Error("a changed PSK must change the hash")
	}
	if k := plan(cfg.Normalize(), charon.BackendKernel)[0].tunnels[0]; k.ikeConn.Children[k.netChild].MarkOut != "" {
		t.Error("kernel-netlink must not use marks")
	}
}

func TestFirewallRules(t *testing.T) {
	rules := FirewallRules(goodConfig().Normalize())
	if len(rules) != 4 || len(rules[0].Sources) != 2 || rules[0].Ports[1] != 4500 || rules[3].Sources != nil {
		t.Errorf("rules: %+v", rules)
	}
	if FirewallRules(Config{}) != nil {
		t.Error("no peers, no rules")
	}
}
