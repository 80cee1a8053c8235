package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"toride/ike/charon"
)

func goodConfig() Config {
	return Config{Connections: map[string]*Connection{"aws-tokyo": {
		LocalNetworks:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		RemoteNetworks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")},
		Tunnels: map[string]*Tunnel{
			"tunnel1": {LocalAddress: netip.MustParseAddr("198.51.100.2"), RemoteAddress: netip.MustParseAddr("203.0.113.10"),
				PreSharedKey: "Good.psk_one_2345", InsideCIDR: netip.MustParsePrefix("169.254.10.0/30")},
			"tunnel2": {LocalAddress: netip.MustParseAddr("198.51.100.2"), RemoteAddress: netip.MustParseAddr("203.0.113.20"),
				PreSharedKey: "Good.psk_two_2345", InsideCIDR: netip.MustParsePrefix("169.254.11.0/30")},
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
		change func(c *Connection, t1, t2 *Tunnel)
		field  string
		want   string
	}{
		{"short psk", func(c *Connection, t1, t2 *Tunnel) { t1.PreSharedKey = "short" }, "connections.aws-tokyo.tunnels.tunnel1.pre-shared-key", "8–64 characters"},
		{"psk charset", func(c *Connection, t1, t2 *Tunnel) { t1.PreSharedKey = "has-dash-and space" }, "connections.aws-tokyo.tunnels.tunnel1.pre-shared-key", "letters, digits"},
		{"psk leading zero", func(c *Connection, t1, t2 *Tunnel) { t2.PreSharedKey = "0startsWithZero" }, "connections.aws-tokyo.tunnels.tunnel2.pre-shared-key", "start with '0'"},
		{"psk long", func(c *Connection, t1, t2 *Tunnel) { t1.PreSharedKey = PSK(strings.Repeat("a", 65)) }, "connections.aws-tokyo.tunnels.tunnel1.pre-shared-key", "8–64"},
		{"inside not /30", func(c *Connection, t1, t2 *Tunnel) { t1.InsideCIDR = netip.MustParsePrefix("169.254.10.0/29") }, "connections.aws-tokyo.tunnels.tunnel1.inside-cidr", "/30 inside 169.254.0.0/16"},
		{"inside outside link-local", func(c *Connection, t1, t2 *Tunnel) { t1.InsideCIDR = netip.MustParsePrefix("10.9.9.0/30") }, "connections.aws-tokyo.tunnels.tunnel1.inside-cidr", "169.254.0.0/16"},
		{"inside reserved", func(c *Connection, t1, t2 *Tunnel) { t1.InsideCIDR = netip.MustParsePrefix("169.254.5.0/30") }, "connections.aws-tokyo.tunnels.tunnel1.inside-cidr", "reserves 169.254.5.0/30"},
		{"inside reserved 169.252", func(c *Connection, t1, t2 *Tunnel) { t2.InsideCIDR = netip.MustParsePrefix("169.254.169.252/30") }, "connections.aws-tokyo.tunnels.tunnel2.inside-cidr", "reserves"},
		{"inside duplicate", func(c *Connection, t1, t2 *Tunnel) { t2.InsideCIDR = t1.InsideCIDR }, "connections.aws-tokyo.tunnels.tunnel2.inside-cidr", "already uses"},
		{"phase 2 lifetime", func(c *Connection, t1, t2 *Tunnel) {
			t1.IKE.Lifetime = Seconds(3600)
			t1.ESP.Lifetime = Seconds(3600)
		}, "connections.aws-tokyo.tunnels.tunnel1.esp.lifetime", "shorter than the phase 1"},
		{"bad encryption", func(c *Connection, t1, t2 *Tunnel) { t1.IKE.Encryption = []Encryption{"3DES"} }, "connections.aws-tokyo.tunnels.tunnel1.ike.encryption", "unsupported encryption"},
		{"bad dh", func(c *Connection, t1, t2 *Tunnel) { t1.ESP.DHGroups = []int{1} }, "connections.aws-tokyo.tunnels.tunnel1.esp.dh-group", "Diffie-Hellman"},
		{"ikev1 gcm", func(c *Connection, t1, t2 *Tunnel) {
			t1.IKEVersion = 1
			t1.IKE.Encryption = []Encryption{AES128GCM16}
		}, "connections.aws-tokyo.tunnels.tunnel1.ike.encryption", "IKEv1 cannot"},
		{"ikev1 many networks", func(c *Connection, t1, t2 *Tunnel) {
			t1.IKEVersion = 1
			c.LocalNetworks = append(c.LocalNetworks, netip.MustParsePrefix("10.3.0.0/16"))
		}, "connections.aws-tokyo.tunnels.tunnel1.ike-version", "one local and one remote"},
		{"no remote networks", func(c *Connection, t1, t2 *Tunnel) { c.RemoteNetworks = nil }, "connections.aws-tokyo.remote-network", "static routing needs"},
		{"overlap", func(c *Connection, t1, t2 *Tunnel) {
			c.RemoteNetworks = []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}
		}, "connections.aws-tokyo.local-network", "overlaps remote"},
		{"no tunnels", func(c *Connection, t1, t2 *Tunnel) { c.Tunnels = nil }, "connections.aws-tokyo.tunnels", "one or two"},
		{"same peer twice", func(c *Connection, t1, t2 *Tunnel) { t2.RemoteAddress = t1.RemoteAddress }, "connections.aws-tokyo.tunnels.tunnel2.remote-address", "already uses"},
		{"bgp without asn", func(c *Connection, t1, t2 *Tunnel) { c.Routing = RoutingBGP }, "connections.aws-tokyo.bgp.local-asn", "ASN"},
		{"replay window", func(c *Connection, t1, t2 *Tunnel) { t1.ReplayWindow = 10 }, "connections.aws-tokyo.tunnels.tunnel1.replay-window", "64–2048"},
		{"dpd action", func(c *Connection, t1, t2 *Tunnel) { t1.DPD.Action = "explode" }, "connections.aws-tokyo.tunnels.tunnel1.dpd.action", "unknown DPD action"},
		{"probe target", func(c *Connection, t1, t2 *Tunnel) { t1.KeepaliveTarget = netip.MustParseAddr("192.0.2.99") }, "connections.aws-tokyo.tunnels.tunnel1.keepalive-target", "remote networks"},
		{"keepalive", func(c *Connection, t1, t2 *Tunnel) { c.Keepalive.Interval = Duration(time.Millisecond) }, "connections.aws-tokyo.keepalive.interval", "100ms–5m"},
		{"preferred", func(c *Connection, t1, t2 *Tunnel) { c.Failover.Preferred = "tunnel3" }, "connections.aws-tokyo.failover.preferred", "no tunnel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := goodConfig()
			c := cfg.Connections["aws-tokyo"]
			tc.change(c, c.Tunnels["tunnel1"], c.Tunnels["tunnel2"])
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
	c := cfg.Connections["aws-tokyo"]
	c.Tunnels["tunnel1"].PreSharedKey = "bad"
	c.Tunnels["tunnel2"].InsideCIDR = netip.MustParsePrefix("169.254.0.0/30")
	cfg.Connections["Bad_Name"] = goodConfig().Connections["aws-tokyo"] // a bad name, and the same peers again
	var ve *ValidationError
	if !errors.As(cfg.Validate(), &ve) {
		t.Fatal("want a ValidationError")
	}
	fields := map[string]bool{}
	for _, fe := range ve.Errors {
		fields[fe.Field] = true
	}
	for _, f := range []string{"connections.aws-tokyo.tunnels.tunnel1.pre-shared-key", "connections.aws-tokyo.tunnels.tunnel2.inside-cidr",
		"connections.Bad_Name.name", "connections.aws-tokyo.tunnels.tunnel1.remote-address"} {
		if !fields[f] {
			t.Errorf("missing an error for %s; got %v", f, ve)
		}
	}
}

// A disabled connection is not loaded: only its shape is checked.
func TestValidateDisabledConnection(t *testing.T) {
	cfg := goodConfig()
	c := cfg.Connections["aws-tokyo"]
	c.Disable = true
	c.Tunnels["tunnel1"].PreSharedKey = "bad"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a disabled connection's tunnels were checked: %v", err)
	}
	c.Failover.Preferred = "tunnel9"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "connections.aws-tokyo.failover.preferred") {
		t.Fatalf("err = %v, want the preferred tunnel named", err)
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
	c := n.Connections["aws-tokyo"]
	tun := c.Tunnels["tunnel1"]
	if tun.IKEVersion != 2 || tun.IKE.Lifetime != Seconds(28800) || tun.ESP.Lifetime != Seconds(3600) ||
		tun.ReplayWindow != 1024 || tun.RekeyMargin != Seconds(540) || tun.DPD.Action != DPDRestart ||
		tun.NATTraversal != NATTAuto || tun.LocalID != "198.51.100.2" || tun.KeepaliveTarget != netip.MustParseAddr("169.254.10.1") {
		t.Errorf("tunnel defaults: %+v", tun)
	}
	if c.StartAction != StartupStart || c.Routing != RoutingStatic || c.Keepalive.Interval != Duration(200*time.Millisecond) ||
		c.Keepalive.Timeout != Seconds(1) || c.Failover.HoldDown != Seconds(30) || c.Failover.Preferred != "tunnel1" ||
		c.BGP.RemoteASN != 64512 || c.BGP.HoldTime != Seconds(30) {
		t.Errorf("connection defaults: %+v", c)
	}
	// The probe timeout does not follow the interval: requests overlap.
	slow := goodConfig()
	slow.Connections["aws-tokyo"].Keepalive.Interval = Seconds(5)
	if got := slow.Normalize().Connections["aws-tokyo"].Keepalive.Timeout; got != Seconds(1) {
		t.Errorf("timeout with a 5 s interval = %s, want 1s", got)
	}
	// Normalize must not share anything with its input.
	orig := goodConfig()
	n2 := orig.Normalize()
	n2.Connections["aws-tokyo"].LocalNetworks[0] = netip.MustParsePrefix("10.9.0.0/16")
	n2.Connections["aws-tokyo"].Tunnels["tunnel1"].IKEVersion = 1
	if o := orig.Connections["aws-tokyo"]; o.LocalNetworks[0] == n2.Connections["aws-tokyo"].LocalNetworks[0] || o.Tunnels["tunnel1"].IKEVersion != 0 {
		t.Error("Normalize aliases its input")
	}
}

// TestDurationIsSeconds: durations are written in seconds, whole ones as integers, fractions to the millisecond.
func TestDurationIsSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    Duration
		text string
	}{{Seconds(3600), "3600"}, {Duration(200 * time.Millisecond), "0.2"}, {Duration(1250 * time.Millisecond), "1.25"},
		{Duration(time.Millisecond), "0.001"}, {0, "0"}} {
		if b, _ := tc.d.MarshalJSON(); string(b) != tc.text {
			t.Errorf("JSON of %v: %s, want %s", time.Duration(tc.d), b, tc.text)
		}
		var back Duration
		if err := back.UnmarshalJSON([]byte(tc.text)); err != nil || back != tc.d {
			t.Errorf("UnmarshalJSON(%s) = %v, %v", tc.text, back, err)
		}
		if err := back.UnmarshalText([]byte(tc.text)); err != nil || back != tc.d {
			t.Errorf("UnmarshalText(%s) = %v, %v", tc.text, back, err)
		}
	}
	for _, bad := range []string{"5m", "0.0001", "1.", ".5", "-0.5", "1e3", "", "0x10"} {
		var d Duration
		if err := d.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q was taken as %v; a duration is a number of seconds with at most three decimals", bad, time.Duration(d))
		}
	}
}

func TestPSKPrintsHidden(t *testing.T) {
	k := PSK("Good.psk_one_2345")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %s %q %#v", k, k, k, k), fmt.Sprintf("%+v", Tunnel{PreSharedKey: k})} {
		if strings.Contains(s, string(k)) {
			t.Errorf("the key leaks: %s", s)
		}
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
	c1, c2 := cfg.Connections["aws-tokyo"].Tunnels["tunnel1"], cfg.Connections["aws-tokyo"].Tunnels["tunnel2"]
	c1.IKE = Phase{Encryption: []Encryption{AES256, AES128GCM16}, Integrity: []Integrity{SHA2256, SHA1}, DHGroups: []int{14, 19}}
	c1.ESP = Phase{Encryption: []Encryption{AES128, AES256GCM16}, Integrity: []Integrity{SHA1}, DHGroups: []int{2}}
	c2.IKEVersion = 1
	c2.DisablePFS = true
	plans := plan(cfg.Normalize(), charon.BackendLibipsec, ModePolicyBased)
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
	again := plan(cfg.Normalize(), charon.BackendLibipsec, ModePolicyBased)
	if again[0].tunnels[0].hash != t1.hash {
		t.Error("hash is not stable")
	}
	c1.PreSharedKey = "Other.psk_12345"
	if plan(cfg.Normalize(), charon.BackendLibipsec, ModePolicyBased)[0].tunnels[0].hash == t1.hash {
		t.Error("a changed PSK must change the hash")
	}
	if k := plan(cfg.Normalize(), charon.BackendKernel, ModePolicyBased)[0].tunnels[0]; k.ikeConn.Children[k.netChild].MarkOut != "" {
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
