package tests

import (
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
	"toride/tests/occlient"
	"toride/tests/toridetest"
)

// TestSSLVPNOverUDPToASecondaryAddress: a box with two addresses on its outside link answers UDP from the one a
// client dialed, not from the kernel's preferred source towards the client. The service's public address is
// NAT-ed in front of the box (so the box listens on every address), and clients on the second network reach
// the box on its alias:
//
//	client 198.18.0.2/16 ── eth0 198.18.0.1/16 + 203.0.113.1/24 [box] eth1 10.50.0.1 ── lan 10.50.0.2
//
// The client dials 203.0.113.1; the kernel's source towards 198.18.0.2 would be 198.18.0.1, which a stock
// client drops as an unexpected peer. Stock openvpn over UDP and stock openconnect over DTLS both reach the LAN
// host, and the AnyConnect session is on DTLS, not fallen back to its TLS connection.
func TestSSLVPNOverUDPToASecondaryAddress(t *testing.T) {
	secondaryAddress(t, "198.18.0.1/16", "198.18.0.2/16", "203.0.113.1/24", "203.0.113.0/24")
}

// TestSSLVPNOverUDPToASecondaryIPv6Address: the same over IPv6 outside addresses (the tunnels carry IPv4):
//
//	client 2001:db8:18::2/64 ── eth0 2001:db8:18::1/64 + 2001:db8:113::1/64 [box] ── lan 10.50.0.2
func TestSSLVPNOverUDPToASecondaryIPv6Address(t *testing.T) {
	secondaryAddress(t, "2001:db8:18::1/64", "2001:db8:18::2/64", "2001:db8:113::1/64", "2001:db8:113::/64")
}

// secondaryAddress runs the test of a box whose eth0 has primary and alias, a client at client on primary's
// network that reaches alias's network (aliasNet) through the box, and dials alias.
func secondaryAddress(t *testing.T, primary, client, alias, aliasNet string) {
	l := lab.New(t, "openvpn", "openconnect", "ping", "unshare")
	v := &vpnLab{t: t, l: l}
	boxNS := l.Namespace("box")
	v.client, v.lan = l.Namespace("cli"), l.Namespace("lan")
	l.Link(boxNS, "eth0", "", v.client, "eth0", client)
	l.Link(boxNS, "eth1", "", v.lan, "eth0", "10.50.0.2/24")
	gw, _, _ := strings.Cut(primary, "/")
	dial, _, _ := strings.Cut(alias, "/")
	v.client.AddRoute(aliasNet, gw)
	v.lan.AddRoute("default", "10.50.0.1")
	v.box = toridetest.Start(t, boxNS, t.TempDir())
	v.commands("set system host-name vpn-gw", "set system interfaces eth0 address "+primary,
		"set system interfaces eth0 address "+alias, "set system interfaces eth1 address 10.50.0.1/24")
	v.commit()
	v.createVPN("192.0.2.100", false)

	profile := v.profile("nora", "&proto=udp")
	if !strings.Contains(profile, "remote 192.0.2.100 1194") {
		t.Fatalf("the UDP profile does not dial the public address:\n%s", profile)
	}
	c := v.connect("nora", strings.Replace(profile, "remote 192.0.2.100 1194", "remote "+dial+" 1194", 1), nil)
	v.pingLAN()
	c.Stop()
	if err := v.box.Proc.WaitOutput(lab.Within(t, 10*time.Second), "client disconnected"); err != nil {
		t.Fatal(err)
	}

	f := v.acUser("olga")
	oc := occlient.Start(t, v.client, occlient.Options{Server: "https://vpn-gw/", CAFile: f.ca,
		Args: []string{"--resolve=vpn-gw:" + dial, "-c", f.cert, "-k", f.key}})
	defer oc.Stop()
	if _, err := oc.WaitConnected(lab.Within(t, 30*time.Second)); err != nil {
		t.Fatalf("openconnect did not connect: %v\nserver log:\n%s", err, v.box.Proc.Output())
	}
	if err := oc.Proc.WaitOutput(lab.Within(t, 10*time.Second), "Established DTLS connection"); err != nil {
		t.Fatalf("no DTLS: %v", err)
	}
	v.pingLAN()
	var sessions struct {
		Sessions []struct {
			User, Protocol string
			DTLS           bool
		}
	}
	v.rest("GET", "/api/v1/sslvpn/sessions", nil, &sessions, 0)
	if len(sessions.Sessions) != 1 || sessions.Sessions[0].Protocol != "anyconnect" || !sessions.Sessions[0].DTLS {
		t.Fatalf("sessions %+v, want olga's over DTLS", sessions.Sessions)
	}
}
