package awsconf

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"toride/ike"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestParseFixtures(t *testing.T) {
	p1v1 := Phase{Encryption: ike.AES128, Integrity: ike.SHA1, DHGroup: 2, Lifetime: 28800 * time.Second, Mode: "main"}
	p2v1 := Phase{Encryption: ike.AES128, Integrity: ike.SHA1, DHGroup: 2, Lifetime: 3600 * time.Second, Mode: "tunnel"}
	p1v2 := Phase{Encryption: ike.AES256, Integrity: ike.SHA2256, DHGroup: 14, Lifetime: 28800 * time.Second, Mode: "main"}
	p2v2 := Phase{Encryption: ike.AES256, Integrity: ike.SHA2256, DHGroup: 14, Lifetime: 3600 * time.Second, Mode: "tunnel"}
	tests := []struct {
		file string
		want *Connection
	}{
		{"generic-static-ikev1.txt", &Connection{
			Format: FormatGeneric, VPNConnectionID: "vpn-0a1b2c3d4e5f60718", VPNGatewayID: "vgw-0123456789abcdef0",
			CustomerGatewayID: "cgw-0fedcba9876543210",
			Tunnels: []Tunnel{
				{CustomerGatewayOutside: addr("198.51.100.7"), VPNGatewayOutside: addr("203.0.113.10"),
					CustomerGatewayInside: pfx("169.254.44.242/30"), VPNGatewayInside: pfx("169.254.44.241/30"),
					PreSharedKey: "kX4r2Vb.Q9tL_7mPzW3nYc8dHs5fJ1aE", IKEVersion: 1, Phase1: p1v1, Phase2: p2v1,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379, MTU: 1436, StaticNextHop: addr("169.254.44.241")},
				{CustomerGatewayOutside: addr("198.51.100.7"), VPNGatewayOutside: addr("203.0.113.20"),
					CustomerGatewayInside: pfx("169.254.45.18/30"), VPNGatewayInside: pfx("169.254.45.17/30"),
					PreSharedKey: "Tz8q_MvN3.aWkR5yBcD2eF7gHj4LpQ9s", IKEVersion: 1, Phase1: p1v1, Phase2: p2v1,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379, MTU: 1436, StaticNextHop: addr("169.254.45.17")},
			},
		}},
		{"generic-bgp-ikev2.txt", &Connection{
			Format: FormatGeneric, VPNConnectionID: "vpn-0b2c3d4e5f6071829", VPNGatewayID: "vgw-0aaaabbbbccccdddd",
			CustomerGatewayID: "cgw-0ddddccccbbbbaaaa",
			Tunnels: []Tunnel{
				{CustomerGatewayOutside: addr("198.51.100.33"), VPNGatewayOutside: addr("203.0.113.130"),
					CustomerGatewayInside: pfx("169.254.100.2/30"), VPNGatewayInside: pfx("169.254.100.1/30"),
					PreSharedKey: "Yh6.Wn2_Kd9pXs4vQm7tB3zLr8cFa5gJ", IKEVersion: 2, Phase1: p1v2, Phase2: p2v2,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379, MTU: 1436,
					BGP: &BGP{CustomerASN: 65000, CloudASN: 64512, Neighbor: addr("169.254.100.1"), HoldTime: 30 * time.Second}},
				{CustomerGatewayOutside: addr("198.51.100.33"), VPNGatewayOutside: addr("203.0.113.140"),
					CustomerGatewayInside: pfx("169.254.101.6/30"), VPNGatewayInside: pfx("169.254.101.5/30"),
					PreSharedKey: "Pv3_Nb8.Hq2wZk6xTf9mCs4dLy7rGe1u", IKEVersion: 2, Phase1: p1v2, Phase2: p2v2,
					DPDInterval: 10 * time.Second, DPDRetries: 3,
					BGP: &BGP{CustomerASN: 65000, CloudASN: 64512, Neighbor: addr("169.254.101.5"), HoldTime: 30 * time.Second}},
			},
		}},
		{"vpn-connection-bgp.xml", &Connection{
			Format: FormatXML, VPNConnectionID: "vpn-0c3d4e5f607182930", VPNGatewayID: "vgw-0456456456456456b",
			CustomerGatewayID: "cgw-0123123123123123a",
			Tunnels: []Tunnel{
				{CustomerGatewayOutside: addr("198.51.100.50"), VPNGatewayOutside: addr("203.0.113.61"),
					CustomerGatewayInside: pfx("169.254.80.146/30"), VPNGatewayInside: pfx("169.254.80.145/30"),
					PreSharedKey: "Lw5.Gc8_Rn2vKq7xYt3mBz9dHs4fJa6p", IKEVersion: 1, Phase1: p1v1, Phase2: p2v1,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379,
					BGP: &BGP{CustomerASN: 65000, CloudASN: 64512, Neighbor: addr("169.254.80.145"), HoldTime: 30 * time.Second}},
				{CustomerGatewayOutside: addr("198.51.100.50"), VPNGatewayOutside: addr("203.0.113.62"),
					CustomerGatewayInside: pfx("169.254.172.86/30"), VPNGatewayInside: pfx("169.254.172.85/30"),
					PreSharedKey: "Sd2_Fh7.Jk4lZx9cVb3nMq8wEr6tYu1i", IKEVersion: 1, Phase1: p1v1, Phase2: p2v1,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379,
					BGP: &BGP{CustomerASN: 65000, CloudASN: 64512, Neighbor: addr("169.254.172.85"), HoldTime: 30 * time.Second}},
			},
		}},
		{"vpn-connection-static.xml", &Connection{
			Format: FormatXML, VPNConnectionID: "vpn-0d4e5f60718293a41", VPNGatewayID: "vgw-0456456456456456b",
			CustomerGatewayID: "cgw-0123123123123123a",
			Tunnels: []Tunnel{
				{CustomerGatewayOutside: addr("198.51.100.77"), VPNGatewayOutside: addr("203.0.113.71"),
					CustomerGatewayInside: pfx("169.254.80.146/30"), VPNGatewayInside: pfx("169.254.80.145/30"),
					PreSharedKey: "Qa7_Ws2.Ed4rTg6yHu8jIk1oLp3zXc5v", IKEVersion: 1, Phase1: p1v1, Phase2: p2v1,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379, StaticNextHop: addr("169.254.80.145")},
				{CustomerGatewayOutside: addr("198.51.100.77"), VPNGatewayOutside: addr("203.0.113.72"),
					CustomerGatewayInside: pfx("169.254.172.86/30"), VPNGatewayInside: pfx("169.254.172.85/30"),
					PreSharedKey: "Mn4.Bv6_Cx8zAs1dFg3hJk5lQw7eRt9y", IKEVersion: 1, Phase1: p1v1, Phase2: p2v1,
					DPDInterval: 10 * time.Second, DPDRetries: 3, TCPMSS: 1379, StaticNextHop: addr("169.254.172.85")},
			},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Parse(read(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(got, tc.want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("(-got +want)\n%s", d)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		file   string
		is     error
		wants  []string // substrings of the error
		nokeys bool     // the error must not leak the pre-shared keys
	}{
		{"bad/garbage.bin", ErrUnknownFormat, []string{"IPSec Tunnel #1", "vpn_connection"}, false},
		{"bad/swanctl.conf", ErrUnknownFormat, nil, false},
		{"bad/connection.json", ErrUnknownFormat, nil, false},
		{"bad/xml-wrong-root.xml", ErrUnknownFormat, []string{"<DescribeVpnConnectionsResponse>"}, false},
		{"bad/generic-truncated.txt", ErrInvalid, []string{"tunnel #2 (line 81)", `missing "- Encryption Algorithm :"`, "Outside IP Addresses", "the file ends at line 90"}, true},
		{"bad/generic-missing-psk.txt", ErrInvalid, []string{"tunnel #1 (line 19)", `missing "- Pre-Shared Key :"`}, true},
		{"bad/generic-bad-values.txt", ErrInvalid, []string{`line 30: encryption algorithm "des-cbc"`, `line 112: customer gateway outside address "YOUR_UPLINK_ADDRESS"`}, true},
		{"bad/xml-truncated.xml", ErrInvalid, []string{"XML", "unexpected EOF"}, true},
		{"bad/xml-missing-outside.xml", ErrInvalid, []string{"vpn_connection/ipsec_tunnel[2]/vpn_gateway/tunnel_outside_address is missing"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Parse(read(t, tc.file))
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.nokeys {
				for _, key := range []string{"Tz8q_MvN3", "kX4r2Vb", "Lw5.Gc8", "Sd2_Fh7"} {
					if strings.Contains(err.Error(), key) {
						t.Errorf("error leaks a pre-shared key: %v", err)
					}
				}
			}
			t.Logf("%s: %v", tc.file, err)
		})
	}
	if _, err := Parse(make([]byte, MaxSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized input: %v", err)
	}
}

// The importer's result is a configuration the engine accepts.
func TestIKEConnection(t *testing.T) {
	local := []netip.Prefix{pfx("10.1.0.0/16")}
	remote := []netip.Prefix{pfx("10.2.0.0/16")}
	for _, file := range []string{"generic-static-ikev1.txt", "generic-bgp-ikev2.txt", "vpn-connection-bgp.xml", "vpn-connection-static.xml"} {
		c, err := Parse(read(t, file))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := c.IKEConnection(ImportOptions{Name: "aws", LocalNetworks: local, RemoteNetworks: remote,
			LocalAddress: addr("192.168.1.10")})
		if err != nil {
			t.Fatal(err)
		}
		if err := (ike.Config{Connections: map[string]*ike.Connection{"aws": conn}}).Validate(); err != nil {
			t.Errorf("%s: imported configuration invalid: %v", file, err)
		}
		t0 := conn.Tunnels["tunnel1"]
		if t0.LocalAddress != addr("192.168.1.10") || t0.LocalID != c.Tunnels[0].CustomerGatewayOutside.String() ||
			t0.InsideCIDR != c.Tunnels[0].CustomerGatewayInside.Masked() || string(t0.PreSharedKey) != c.Tunnels[0].PreSharedKey {
			t.Errorf("%s: tunnel 1 = %+v", file, t0)
		}
		local, remote, _ := t0.InsideAddresses()
		if local != c.Tunnels[0].CustomerGatewayInside.Addr() || remote != c.Tunnels[0].VPNGatewayInside.Addr() {
			t.Errorf("%s: inside addresses %s/%s, file says %s/%s", file, local, remote,
				c.Tunnels[0].CustomerGatewayInside, c.Tunnels[0].VPNGatewayInside)
		}
		if wantBGP := c.Tunnels[0].BGP != nil; (conn.Routing == ike.RoutingBGP) != wantBGP {
			t.Errorf("%s: routing %+v", file, conn.Routing)
		}
	}
}

// Marshal then Parse gives the same connection, in both formats.
func TestRoundTrip(t *testing.T) {
	for _, file := range []string{"generic-static-ikev1.txt", "generic-bgp-ikev2.txt", "vpn-connection-bgp.xml", "vpn-connection-static.xml"} {
		c, err := Parse(read(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if c.Format == FormatGeneric {
			roundTripGeneric(t, c)
		} else {
			roundTripXML(t, c)
		}
	}
}

var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func roundTripGeneric(t *testing.T, c *Connection) {
	t.Helper()
	out := MarshalGeneric(c)
	c2, err := ParseGeneric(out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c2, c) {
		t.Fatalf("generic round trip (-got +want):\n%s\n%s", cmp.Diff(c2, c, cmpOpts...), out)
	}
}

func roundTripXML(t *testing.T, c *Connection) {
	t.Helper()
	out, err := MarshalXML(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseXML(out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c2, c) {
		t.Fatalf("XML round trip (-got +want):\n%s\n%s", cmp.Diff(c2, c, cmpOpts...), out)
	}
}

func FuzzParseGeneric(f *testing.F) {
	for _, file := range []string{"generic-static-ikev1.txt", "generic-bgp-ikev2.txt", "bad/generic-truncated.txt"} {
		f.Add(read(f, file))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseGeneric(data)
		if err != nil {
			return
		}
		roundTripGeneric(t, c)
	})
}

func FuzzParseXML(f *testing.F) {
	for _, file := range []string{"vpn-connection-bgp.xml", "vpn-connection-static.xml", "bad/xml-truncated.xml"} {
		f.Add(read(f, file))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseXML(data)
		if err != nil {
			return
		}
		roundTripXML(t, c)
	})
}

func FuzzParse(f *testing.F) {
	f.Add(read(f, "generic-static-ikev1.txt"))
	f.Add(read(f, "vpn-connection-static.xml"))
	f.Add(read(f, "bad/garbage.bin"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil && len(c.Tunnels) == 0 {
			t.Fatal("a parsed connection without tunnels")
		}
	})
}
