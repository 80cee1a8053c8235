package tests

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
)

// TestSSLVPNReachesOnlyWhatItIsGiven: a session reaches the networks it is given and nothing else behind the
// box, whatever routes the client adds itself, and a commit that gives or takes a network applies to the live
// session at once. The far host's own ICMP counters prove that nothing got through, not only the appliance's:
//
//	client 192.0.2.2 ── eth0 [box] eth1 10.50.0.1 ── lan 10.50.0.2 (given)
//	                             eth2 10.60.0.1 ── other 10.60.0.2 (not given, until the commit)
//
// Stock openvpn over UDP and over TCP, stock openconnect over DTLS and over TLS alone (CSTP), each session live
// through both commits.
func TestSSLVPNReachesOnlyWhatItIsGiven(t *testing.T) {
	v := newVPNLab(t, false)
	other := v.l.Namespace("other")
	v.l.Link(v.box.NS, "eth2", "", other, "eth0", "10.60.0.2/24")
	other.AddRoute("default", "10.60.0.1")
	v.commands("set system interfaces eth2 address 10.60.0.1/24")
	v.commit()

	// Each way in connects user and returns the client's tunnel device and how to stop it.
	openvpn := func(proto string) func(user string) (string, func()) {
		return func(user string) (string, func()) {
			c := v.connect(user, v.profile(user, "&proto="+proto), nil)
			return "tun0", c.Stop
		}
	}
	openconnect := func(args ...string) func(user string) (string, func()) {
		return func(user string) (string, func()) {
			f := v.acUser(user)
			c, env := v.openconnect(f, "", append([]string{"-c", f.cert, "-k", f.key}, args...)...)
			return env["TUNDEV"], c.Stop
		}
	}
	for _, way := range []struct {
		name    string
		connect func(user string) (string, func())
	}{
		{"openvpn-udp", openvpn("udp")}, {"openvpn-tcp", openvpn("tcp")},
		{"anyconnect-dtls", openconnect()}, {"anyconnect-cstp", openconnect("--no-dtls")},
	} {
		t.Run(way.name, func(t *testing.T) {
			user := "nora-" + way.name
			dev, stop := way.connect(user)
			defer stop()
			v.pingLAN()
			// The client routes the other network into its tunnel by itself: the box must not forward it.
			v.client.MustRun("ip", "route", "replace", "10.60.0.0/24", "dev", dev)
			before := icmpEchosIn(t, other)
			if err := v.client.Ping("10.60.0.2", 3); err == nil {
				t.Fatal("the client reached a network it was not given")
			}
			if n := icmpEchosIn(t, other); n != before {
				t.Fatalf("the far host received %d echo requests from a client that was not given its network", n-before)
			}
			id, n := session(t, v, user)
			if n < 3 {
				t.Errorf("the session counts %d forbidden packets, want at least 3", n)
			}

			// The network given by a commit: the live session reaches it at once; taken away, it loses it.
			v.commands("set sslvpn services office local-network 10.60.0.0/24")
			v.commit()
			if err := lab.WaitFor(lab.Within(t, 10*time.Second), 200*time.Millisecond, func() error { return v.client.Ping("10.60.0.2", 1) }); err != nil {
				t.Fatalf("the live session does not reach the network a commit gave it: %v", err)
			}
			v.commands("delete sslvpn services office local-network 10.60.0.0/24")
			v.commit()
			before = icmpEchosIn(t, other)
			if err := v.client.Ping("10.60.0.2", 2); err == nil {
				t.Fatal("the live session still reaches the network a commit took away")
			}
			if n := icmpEchosIn(t, other); n != before {
				t.Fatalf("the far host received %d echo requests after the commit took its network away", n-before)
			}
			v.pingLAN()
			if now, _ := session(t, v, user); now != id {
				t.Fatalf("the session was replaced (%s, now %s): the commits must apply to it live", id, now)
			}
		})
	}
}

// icmpEchosIn reads the namespace's count of ICMP echo requests received (IcmpInEchos of /proc/net/snmp).
func icmpEchosIn(t *testing.T, ns *lab.Netns) int {
	t.Helper()
	var names, values []string
	for _, line := range strings.Split(ns.MustRun("cat", "/proc/net/snmp"), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Icmp:" {
			if names == nil {
				names = f[1:]
			} else {
				values = f[1:]
			}
		}
	}
	for i, n := range names {
		if n == "InEchos" && i < len(values) {
			v, err := strconv.Atoi(values[i])
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no InEchos in the ICMP counters of %s", ns.Name)
	return 0
}

// session returns the ID of user's session and the forbidden packets the API counts on it.
func session(t *testing.T, v *vpnLab, user string) (string, uint64) {
	t.Helper()
	var out struct {
		Sessions []struct {
			ID, User  string
			Forbidden uint64
		}
	}
	v.rest("GET", "/api/v1/sslvpn/sessions", nil, &out, 0)
	for _, s := range out.Sessions {
		if s.User == user {
			return s.ID, s.Forbidden
		}
	}
	t.Fatalf("no session of %s: %+v", user, out.Sessions)
	return "", 0
}

// TestSSLVPNFullTunnelLeavesThroughTheUplink: a server with redirect-gateway sends its clients' Internet traffic
// out of the box's uplink with the box's address (source NAT), while the LAN still sees the client's own:
//
//	client 192.0.2.2 (default via the box) ── eth0 [box] eth1 10.50.0.1 ── lan 10.50.0.2
//	                                                   eth3 198.51.100.1 ── inet 198.51.100.2 (no route to the pool)
//
// The stock openvpn client runs the downloaded profile, which takes the whole default route into the tunnel.
func TestSSLVPNFullTunnelLeavesThroughTheUplink(t *testing.T) {
	v := newVPNLab(t, false)
	inet := v.l.Namespace("inet")
	v.l.Link(v.box.NS, "eth3", "", inet, "eth0", "198.51.100.2/24")
	v.commands("set system interfaces eth3 address 198.51.100.1/24", "set sslvpn servers main redirect-gateway")
	v.commit()
	// A client on a network with a default gateway, as a laptop has: redirect-gateway replaces it.
	v.client.AddRoute("default", "192.0.2.1")

	c := v.connect("fran", v.profile("fran", "&proto=udp"), nil)
	defer c.Stop()
	if out := v.client.MustRun("ip", "route", "get", "198.51.100.2"); !strings.Contains(out, "dev tun0") {
		t.Fatalf("the full tunnel does not carry the Internet:\n%s", out)
	}
	seen := inet.Capture("eth0")
	defer seen.Close()
	if err := v.client.Ping("198.51.100.2", 2); err != nil {
		t.Fatalf("the full-tunnel client does not reach the Internet host: %v", err)
	}
	if _, err := seen.Wait(5*time.Second, func(p lab.Packet) bool {
		return !p.Outgoing && p.ICMP != nil && p.Src.String() == "198.51.100.1"
	}); err != nil {
		t.Fatalf("the Internet host did not see the box's address: %v", err)
	}
	lanSeen := v.lan.Capture("eth0")
	defer lanSeen.Close()
	v.pingLAN()
	if _, err := lanSeen.Wait(5*time.Second, func(p lab.Packet) bool {
		return !p.Outgoing && p.ICMP != nil && strings.HasPrefix(p.Src.String(), "10.8.0.")
	}); err != nil {
		t.Fatalf("the LAN host did not see the client's own address: %v", err)
	}
}
