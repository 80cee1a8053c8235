package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"toride/ike"
	"toride/sslvpn"
)

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// richLines touches every kind of node: containers, tag nodes, leaves, multi-values, flags, quoting.
const richLines = `
set system host-name 'branch-gw1'
set system domain-name 'example.net'
set system interfaces eth0 description 'uplink to the ISP'
set system interfaces eth0 address '198.51.100.10/24'
set system interfaces eth1 address '10.50.0.1/24'
set system interfaces eth1 address '10.50.1.1/24'
set system interfaces eth1 mtu '1400'
set system interfaces eth2 disable
set system static-routes 0.0.0.0/0 next-hop '198.51.100.1'
set system dns name-server '192.0.2.53'
set system dns search-domain 'corp.example.net'
set system ntp server 'ntp.example.net'
set ipsec connections aws local-network '10.50.0.0/24'
set ipsec connections aws remote-network '172.31.0.0/16'
set ipsec connections aws tunnels tunnel1 local-address '198.51.100.10'
set ipsec connections aws tunnels tunnel1 remote-address '203.0.113.11'
set ipsec connections aws tunnels tunnel1 pre-shared-key 'Key.with_dots1'
set ipsec connections aws tunnels tunnel1 inside-cidr '169.254.10.0/30'
set ipsec connections aws tunnels tunnel1 ike encryption 'aes256'
set ipsec connections aws tunnels tunnel1 ike dh-group '14'
set ipsec connections aws tunnels tunnel2 local-address '198.51.100.10'
set ipsec connections aws tunnels tunnel2 remote-address '203.0.113.12'
set ipsec connections aws tunnels tunnel2 pre-shared-key 'AnotherKey_2'
set ipsec connections aws tunnels tunnel2 inside-cidr '169.254.11.0/30'
set ipsec connections aws tunnels tunnel2 ike-version '1'
set sslvpn services office local-network '10.50.0.0/24'
set sslvpn services office external-address '198.51.100.10'
set sslvpn servers main service 'office'
set sslvpn servers main pool '10.8.0.0/24'
set sslvpn servers main otp
set sslvpn servers main ca 'users'
set sslvpn servers main description "it's the main one"
set users alice full-name 'Alice Example'
set users bob
set api keys ops key-sha256 '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
`

func mustParse(t *testing.T, lines string) *Config {
	t.Helper()
	c := &Config{}
	if err := c.ParseCommands(lines); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCommandsRoundTrip(t *testing.T) {
	c := mustParse(t, richLines)
	lines := c.Commands()
	back := mustParse(t, strings.Join(lines, "\n"))
	if diff := cmp.Diff(back, c, cmpNetip); diff != "" {
		t.Fatalf("set lines → config → set lines changed the config (-got +want):\n%s", diff)
	}
	// The rendering is canonical: rendering again gives the same lines.
	if diff := cmp.Diff(back.Commands(), lines); diff != "" {
		t.Fatalf("rendering is not stable (-got +want):\n%s", diff)
	}
	// JSON round trip, byte for byte.
	j, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := Unmarshal(j)
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := Marshal(fromJSON)
	if string(j) != string(j2) {
		t.Fatalf("JSON round trip changed the bytes:\n%s\n---\n%s", j, j2)
	}
	if !Equal(fromJSON, c) {
		t.Fatal("Equal is false after a JSON round trip")
	}
	for _, want := range []string{
		"set system interfaces eth2 disable",
		"set users bob",
		`set sslvpn servers main description "it's the main one"`,
		"set system static-routes 0.0.0.0/0 next-hop '198.51.100.1'",
	} {
		if !contains(lines, want) {
			t.Errorf("rendered lines lack %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func TestTree(t *testing.T) {
	c := mustParse(t, `
set system host-name 'gw'
set system interfaces eth0 address '192.0.2.1/24'
set system interfaces eth0 address '192.0.2.2/24'
set users bob
`)
	want := `system {
    host-name gw
    interfaces eth0 {
        address 192.0.2.1/24
        address 192.0.2.2/24
    }
}
users bob {
}
`
	if diff := cmp.Diff(c.Tree(), want); diff != "" {
		t.Fatalf("tree (-got +want):\n%s", diff)
	}
}

func TestSetAndDeleteErrors(t *testing.T) {
	base := `
set system interfaces eth0 address '192.0.2.1/24'
set system dns name-server '192.0.2.53'
set system host-name 'gw'
`
	tests := []struct {
		name, line, wantErr string
	}{
		{"unknown top node", "set sytem host-name x", `no node "sytem" here; one of system, ipsec, sslvpn, users, pki, api`},
		{"unknown child", "set system hostname x", `system: no node "hostname" here; one of host-name,`},
		{"missing value", "set system host-name", "system host-name: needs a value"},
		{"two values", "set system host-name a b", "takes one value; quote a value with spaces"},
		{"bad address", "set system interfaces eth0 address 192.0.2.300/24", `"192.0.2.300/24" is not an address with prefix length`},
		{"bad ifname", "set system interfaces this-name-is-far-too-long mtu 1500", "is not an interface name"},
		{"mtu range", "set system interfaces eth0 mtu 100", `"100" is not a number from 576 to 9000`},
		{"enum", "set sslvpn servers s topology star", `"star" is not allowed; one of subnet, net30`},
		{"tag needs key", "set system interfaces", "needs a interface name"},
		{"flag value", "set system interfaces eth0 disable maybe", "takes no value"},
		{"route key host bits", "set system static-routes 10.0.0.1/8 next-hop 192.0.2.9", "has host bits set; use 10.0.0.0/8"},
		{"control chars", "set system host-name \"a\\x01\"", ""},
		{"delete absent entry", "delete system interfaces eth9", "no such entry (existing: eth0)"},
		{"delete absent value", "delete system dns name-server 192.0.2.54", "is not one of the values"},
		{"delete wrong leaf value", "delete system host-name other", `the value is "gw", not "other"`},
		{"delete unset", "delete system domain-name", "nothing to delete: not set"},
		{"not a command", "show system", `"show" is not a configuration command`},
		{"unterminated quote", "set system host-name 'gw", "unterminated single quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, base)
			before := c.Clone()
			err := c.Apply(tt.line)
			if tt.wantErr == "" {
				return // only must not panic
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Apply(%q) = %v, want an error containing %q", tt.line, err, tt.wantErr)
			}
			if !Equal(c, before) && !strings.HasPrefix(tt.line, "set") {
				t.Fatalf("a failed delete changed the config")
			}
		})
	}
}

func TestDeleteRemovesWhatItNames(t *testing.T) {
	c := mustParse(t, richLines)
	for _, line := range []string{
		"delete system interfaces eth1 address 10.50.1.1/24",
		"delete system interfaces eth2",
		"delete ipsec connections aws tunnels tunnel2",
		"delete system ntp",
		"delete sslvpn servers main otp",
	} {
		if err := c.Apply(line); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	got := strings.Join(c.Commands(), "\n")
	for _, gone := range []string{"10.50.1.1/24", "eth2", "tunnel2", "ntp", "main otp"} {
		if strings.Contains(got, gone) {
			t.Errorf("%q still rendered after delete:\n%s", gone, got)
		}
	}
	if !strings.Contains(got, "10.50.0.1/24") {
		t.Error("deleting one address removed the other")
	}
}

func TestDefaultIsValid(t *testing.T) {
	if ps := Validate(Default().WithDefaults()); ps != nil {
		t.Fatalf("the embedded default config is invalid:\n%v", ps)
	}
}

func TestWithDefaults(t *testing.T) {
	c := mustParse(t, richLines)
	e := c.WithDefaults()
	if c.System.Interfaces["eth0"].MTU != 0 {
		t.Fatal("WithDefaults changed its receiver")
	}
	tun := e.IPsec.Connections["aws"].Tunnels["tunnel1"]
	checks := []struct {
		name      string
		got, want any
	}{
		{"mtu", e.System.Interfaces["eth0"].MTU, 1500},
		{"set mtu kept", e.System.Interfaces["eth1"].MTU, 1400},
		{"ike version", tun.IKEVersion, 2},
		{"ike lifetime", tun.IKE.Lifetime, ike.Seconds(28800)},
		{"esp lifetime", tun.ESP.Lifetime, ike.Seconds(3600)},
		{"set ike encryption kept", tun.IKE.Encryption, []ike.Encryption{"aes256"}},
		{"keepalive target", tun.KeepaliveTarget.String(), "169.254.10.1"},
		{"preferred tunnel", e.IPsec.Connections["aws"].Failover.Preferred, "tunnel1"},
		{"probe interval", e.IPsec.Connections["aws"].Keepalive.Interval, ike.Duration(200 * time.Millisecond)},
		{"replay window", tun.ReplayWindow, 1024},
		{"max sessions from flavor", e.SSLVPN.Servers["main"].MaxSessions, 20},
		{"sessions per user", e.SSLVPN.Servers["main"].MaxPerUser, sslvpn.DefaultUserSessions},
		{"openvpn tcp port", e.SSLVPN.Servers["main"].OpenVPN.TCPPort, 443},
	}
	for _, ck := range checks {
		if diff := cmp.Diff(ck.got, ck.want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", ck.name, diff)
		}
	}
}

func TestValidate(t *testing.T) {
	ca := "set pki ca users certificate " + Quote(testCAPEM) + "\nset pki ca users private-key " + Quote(testCAKeyPEM) + "\n"
	tests := []struct {
		name  string
		lines string
		want  []string // each a whole Problem.String()
	}{
		{
			name: "net30 pool too small for the flavor",
			lines: ca + `set sslvpn services office local-network 10.50.0.0/24
set sslvpn servers main service office
set sslvpn servers main ca users
set sslvpn servers main pool 10.8.0.0/28
set sslvpn servers main topology net30`,
			want: []string{"sslvpn.servers.main.pool: 10.8.0.0/28 holds 3 clients in net30 topology (a /30 each, one kept for the server), fewer than max-sessions 20; use a /25 or larger"},
		},
		{
			name: "subnet pool sized for a large flavor",
			lines: ca + `set sslvpn services office local-network 10.50.0.0/24
set sslvpn servers main service office
set sslvpn servers main ca users
set sslvpn servers main pool 10.8.0.0/25
set sslvpn servers main flavor large`,
			want: []string{"sslvpn.servers.main.pool: 10.8.0.0/25 holds 125 clients in subnet topology (one address each), fewer than max-sessions 255; use a /23 or larger"},
		},
		{
			name: "sessions per user above the server's",
			lines: ca + `set sslvpn services office local-network 10.50.0.0/24
set sslvpn servers main service office
set sslvpn servers main ca users
set sslvpn servers main pool 10.8.0.0/24
set sslvpn servers main max-sessions 3
set sslvpn servers main max-sessions-per-user 5`,
			want: []string{"sslvpn.servers.main.max-sessions-per-user: 5 sessions for one user exceed the server's max-sessions 3; set it to 3 or less, or raise max-sessions"},
		},
		{
			name: "the default per user follows a lower max-sessions",
			lines: ca + `set sslvpn services office local-network 10.50.0.0/24
set sslvpn servers main service office
set sslvpn servers main ca users
set sslvpn servers main pool 10.8.0.0/24
set sslvpn servers main max-sessions 1`,
		},
		{
			name: "pool overlaps local network and ipsec remote network",
			lines: ca + `set sslvpn services office local-network 10.8.0.0/16
set sslvpn servers main service office
set sslvpn servers main ca users
set sslvpn servers main pool 10.8.0.0/24
set ipsec connections aws local-network 10.50.0.0/24
set ipsec connections aws remote-network 10.8.0.0/17
set ipsec connections aws tunnels t1 local-address 198.51.100.10
set ipsec connections aws tunnels t1 remote-address 203.0.113.11
set ipsec connections aws tunnels t1 pre-shared-key abcdefgh
set ipsec connections aws tunnels t1 inside-cidr 169.254.10.0/30`,
			want: []string{
				"sslvpn.servers.main.pool: 10.8.0.0/24 overlaps ipsec.connections.aws.remote-network 10.8.0.0/17; choose a pool that overlaps none of the networks it routes to",
				"sslvpn.servers.main.pool: 10.8.0.0/24 overlaps sslvpn.services.office.local-network 10.8.0.0/16; choose a pool that overlaps none of the networks it routes to",
			},
		},
		{
			name: "system",
			lines: `set system host-name 'bad_name'
set system interfaces eth0 address 192.0.2.0/24
set system interfaces eth1 address 192.0.2.7/25
set system interfaces eth2 address 198.51.100.1/24
set system static-routes 0.0.0.0/0 next-hop 203.0.113.1`,
			want: []string{
				`system.host-name: "bad_name" is not a host name; use letters, digits and '-', at most 63, e.g. branch-gw1`,
				"system.interfaces.eth0.address: 192.0.2.0/24 is the network or broadcast address of its subnet; give the interface a host address inside the network, e.g. 192.0.2.1/24",
				"system.static-routes.0.0.0.0/0.next-hop: 203.0.113.1 is not inside any interface's network; use a gateway inside the network of an enabled interface, or add that interface's address",
			},
		},
		{
			name:  "references",
			lines: `set sslvpn servers main pool 10.8.0.0/24`,
			want: []string{
				"sslvpn.servers.main.service: a server needs the VPN service it serves; set sslvpn servers main service NAME (an sslvpn services entry)",
				"sslvpn.servers.main.ca: a server needs the CA that issues its client certificates; set sslvpn servers main ca NAME (a pki ca entry)",
			},
		},
		{
			// The order problems are reported in: the schema, the system, the IPsec connections' shape, the SSL-VPN,
			// users, PKI, API, and the IPsec engine's rules last.
			name: "order of the sections",
			lines: `set system host-name 'bad_name'
set ipsec connections aws local-network 10.50.0.0/24
set ipsec connections aws remote-network 172.31.0.0/16
set ipsec connections aws failover preferred tunnel9
set ipsec connections aws tunnels t1 local-address 198.51.100.10
set ipsec connections aws tunnels t1 remote-address 203.0.113.11
set ipsec connections aws tunnels t1 pre-shared-key short
set ipsec connections aws tunnels t1 inside-cidr 169.254.10.0/30
set sslvpn servers main pool 10.8.0.0/24
set api https listen-address 192.168.1.1`,
			want: []string{
				`system.host-name: "bad_name" is not a host name; use letters, digits and '-', at most 63, e.g. branch-gw1`,
				`ipsec.connections.aws.failover.preferred: no tunnel "tunnel9" in this connection; use one of: t1`,
				"sslvpn.servers.main.service: a server needs the VPN service it serves; set sslvpn servers main service NAME (an sslvpn services entry)",
				"sslvpn.servers.main.ca: a server needs the CA that issues its client certificates; set sslvpn servers main ca NAME (a pki ca entry)",
				"api.https.listen-address: HTTPS is on but no API key would be accepted; add a key with `toride generate api-key NAME`, or delete api https",
				"ipsec.connections.aws.tunnels.t1.pre-shared-key: a pre-shared key must be 8–64 characters of letters, digits, '.' and '_'; use the key the cloud generated, or generate one of 32 such characters",
			},
		},
		{
			// A lease's network is known only when it comes: with DHCP on an enabled interface, a static route's
			// next hop may be outside every configured network; with that interface disabled, it may not.
			name: "next hop behind a DHCP interface",
			lines: `set system interfaces eth0 dhcp
set system interfaces eth0 disable
set system static-routes 10.99.0.0/16 next-hop 203.0.113.1`,
			want: []string{"system.static-routes.10.99.0.0/16.next-hop: 203.0.113.1 is not inside any interface's network; use a gateway inside the network of an enabled interface, or add that interface's address"},
		},
		{
			name:  "next hop from DHCP",
			lines: "set system interfaces eth0 dhcp\nset system static-routes 10.99.0.0/16 next-hop 203.0.113.1",
		},
		{
			name:  "api https without keys",
			lines: `set api https listen-address 192.168.1.1`,
			want:  []string{"api.https.listen-address: HTTPS is on but no API key would be accepted; add a key with `toride generate api-key NAME`, or delete api https"},
		},
		{
			name: "bad PEM",
			lines: `set pki certificates web certificate 'not pem'
set pki certificates web private-key 'nope'`,
			want: []string{
				"pki.certificates.web.certificate: not a PEM certificate; give a PEM block starting with -----BEGIN CERTIFICATE-----",
				"pki.certificates.web.private-key: not PEM; give a PEM private key",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := Validate(mustParse(t, tt.lines).WithDefaults())
			var got []string
			for _, pr := range ps {
				got = append(got, pr.String())
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Fatalf("problems (-got +want):\n%s", diff)
			}
		})
	}
}

func TestValidateChecksJSONBypassingSet(t *testing.T) {
	c, err := Unmarshal([]byte(`{"system":{"host-name":"gw","interfaces":{"a/b":{"mtu":20}}},"sslvpn":{"servers":{"s":{"topology":"ring"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := Validate(c.WithDefaults()).Error()
	for _, want := range []string{
		`system.interfaces.a/b: "a/b" is not an interface name`,
		"system.interfaces.a/b.mtu: 20 is out of range; use a number from 576 to 9000",
		`sslvpn.servers.s.topology: "ring" is not an allowed value; use one of subnet, net30`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("validation misses %q in:\n%s", want, s)
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"system":{"hostname":"x"}}`, `unknown field "hostname"`},
		{"{\n\"system\": {\n\"host-name\": 3}}", `field "system.host-name": string cannot hold a JSON number`},
		{"{\n  \"system\": {,}}", "line 2 column"},
		{`{} {}`, "trailing data"},
	} {
		if _, err := Unmarshal([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Unmarshal(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	c := mustParse(t, richLines)
	n, err := c.Describe([]string{"system", "interfaces"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != Tag || !cmp.Equal(n.Values, []string{"eth0", "eth1", "eth2"}) {
		t.Fatalf("interfaces node = %+v", n)
	}
	n, err = c.Describe([]string{"sslvpn", "servers", "main", "topology"})
	if err != nil || n.Default != "subnet" || !cmp.Equal(n.Enum, []string{"subnet", "net30"}) {
		t.Fatalf("topology node = %+v, %v", n, err)
	}
	n, err = c.Describe([]string{"system", "interfaces", "eth9"})
	if err != nil || n.Kind != Container || !contains(n.Children, "address") {
		t.Fatalf("a new interface entry should describe its children: %+v, %v", n, err)
	}
}

func TestSplitAndQuote(t *testing.T) {
	for _, s := range []string{"plain", "with space", "it's", "line\nbreak", `back\slash`, `"dq"`, ""} {
		words, err := Split("set x " + Quote(s))
		if err != nil || len(words) != 3 || words[2] != s {
			t.Errorf("Quote(%q) does not split back: %q %v", s, words, err)
		}
	}
}

func TestDiff(t *testing.T) {
	a := mustParse(t, "set system host-name a\nset system interfaces eth0 address 192.0.2.1/24\nset users bob")
	b := mustParse(t, "set system host-name b\nset system interfaces eth0 address 192.0.2.1/24\nset users carol")
	want := []string{
		"- set system host-name 'a'",
		"+ set system host-name 'b'",
		"- set users bob",
		"+ set users carol",
	}
	if diff := cmp.Diff(Diff(a, b), want); diff != "" {
		t.Fatalf("(-got +want):\n%s", diff)
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Fatalf("diff of a config with itself: %q", d)
	}
}
