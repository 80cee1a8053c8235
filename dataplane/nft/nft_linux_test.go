package nft_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"toride/dataplane/nft"
	"toride/tests/lab"
)

func TestRuleChecks(t *testing.T) {
	m, err := nft.New(nft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	for name, r := range map[string]nft.Rule{
		"esp with ports": {Protocol: nft.ProtoESP, Ports: []uint16{1}},
		"no protocol":    {},
		"bad source":     {Protocol: nft.ProtoUDP, Sources: []netip.Prefix{{}}},
	} {
		if err := m.Set(ctx, "ike", []nft.Rule{r}); !errors.Is(err, nft.ErrNFT) {
			t.Errorf("%s: err = %v, want ErrNFT", name, err)
		}
	}
	if err := m.Set(ctx, "input", nil); err == nil {
		t.Error("owner \"input\" must be refused (it is the base chain)")
	}
	if _, err := nft.New(nft.Options{Table: "Bad Name"}); err == nil {
		t.Error("bad table name accepted")
	}
}

// In a fresh namespace: rules take effect on real packets, owners are independent, other tables are untouched,
// and Delete removes only our table.
func TestManagerInNamespace(t *testing.T) {
	l := lab.New(t, "nft")
	a, b := l.Namespace("a"), l.Namespace("b")
	l.Link(a, "eth0", "10.7.0.1/24", b, "eth0", "10.7.0.2/24")
	b.MustRun("nft", "add table ip other")
	b.MustRun("nft", "add chain ip other keep { type filter hook input priority 10 ; }")

	m, err := nft.New(nft.Options{NetnsPath: "/run/netns/" + b.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := lab.Within(t, 60*time.Second)

	// b listens on UDP 500; a sends.
	var conn *net.UDPConn
	if err := doIn(b, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 500})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	received := func() bool {
		var c *net.UDPConn
		if err := doIn(a, func() error {
			var err error
			c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 7, 0, 2), Port: 500})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ike?")); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 16)
		_, err := conn.Read(buf)
		return err == nil
	}
	if !received() {
		t.Fatal("UDP 500 blocked before any rule")
	}

	peerOnly := func(peer string) []nft.Rule {
		p := netip.MustParsePrefix(peer)
		return []nft.Rule{
			{Comment: "IKE from peer", Protocol: nft.ProtoUDP, Ports: []uint16{500, 4500}, Sources: []netip.Prefix{p}},
			{Comment: "ESP from peer", Protocol: nft.ProtoESP, Sources: []netip.Prefix{p}},
			{Comment: "IKE from others", Protocol: nft.ProtoUDP, Ports: []uint16{500, 4500}, Verdict: nft.Drop},
		}
	}
	if err := m.Set(ctx, "ike", peerOnly("10.7.0.9/32")); err != nil {
		t.Fatal(err)
	}
	if received() {
		t.Fatal("UDP 500 from a non-peer passed")
	}
	if err := m.Set(ctx, "ike", peerOnly("10.7.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if !received() {
		t.Fatal("UDP 500 from the peer was dropped")
	}
	if err := m.Set(ctx, "sslvpn", []nft.Rule{{Comment: "SSL-VPN", Protocol: nft.ProtoTCP, Ports: []uint16{443}}}); err != nil {
		t.Fatal(err)
	}
	if got := m.Rules("ike"); len(got) != 3 {
		t.Fatalf("ike rules after sslvpn Set: %d, want 3", len(got))
	}
	out := b.MustRun("nft", "list table inet toride")
	for _, want := range []string{"jump ike", "jump sslvpn", `comment "IKE from peer"`, "tcp dport 443", "ip saddr 10.7.0.0/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Idempotent: the same rules again give the same table.
	if err := m.Set(ctx, "ike", peerOnly("10.7.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if again := b.MustRun("nft", "list table inet toride"); again != out {
		t.Errorf("second Set changed the table:\n%s\nvs\n%s", out, again)
	}
	if err := m.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	all := b.MustRun("nft", "list ruleset")
	if strings.Contains(all, "toride") || !strings.Contains(all, "table ip other") {
		t.Fatalf("after Delete:\n%s", all)
	}
	if err := m.Delete(ctx); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	m.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "ike", nil); err == nil {
		t.Fatal("Set after Close must fail")
	}
}

// TestMasqueradeInNamespace: a router masquerades its clients' network towards the Internet, but not towards the
// exempt LAN, which sees the clients' own address:
//
//	client 10.8.0.2 ── eth0 10.8.0.1 [router] eth1 198.51.100.1 ── inet 198.51.100.2 (no route back to 10.8.0.0/24)
//	                                           eth2 10.50.0.1    ── lan 10.50.0.2 (its own route back)
//
// The Internet host answers a ping only through the NAT; the LAN host's capture shows the client's address.
// Removing the masquerade leaves the Internet unreachable again, and the other owners' chains untouched.
func TestMasqueradeInNamespace(t *testing.T) {
	l := lab.New(t, "ping")
	client, router, inet, lan := l.Namespace("cli"), l.Namespace("rtr"), l.Namespace("inet"), l.Namespace("lan")
	l.Link(client, "eth0", "10.8.0.2/24", router, "eth0", "10.8.0.1/24")
	l.Link(router, "eth1", "198.51.100.1/24", inet, "eth0", "198.51.100.2/24")
	l.Link(router, "eth2", "10.50.0.1/24", lan, "eth0", "10.50.0.2/24")
	router.EnableForwarding()
	client.AddRoute("default", "10.8.0.1")
	lan.AddRoute("10.8.0.0/24", "10.50.0.1")

	m, err := nft.New(nft.Options{NetnsPath: "/run/netns/" + router.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := lab.Within(t, time.Minute)
	if err := client.Ping("198.51.100.2", 1); err == nil {
		t.Fatal("the Internet host answered without NAT: the test proves nothing")
	}
	masq := []nft.Masquerade{{Source: netip.MustParsePrefix("10.8.0.0/24"), Exempt: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/24"), netip.MustParsePrefix("10.8.0.0/24")}}}
	if err := m.SetMasquerades(ctx, "sslvpn", masq); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping("198.51.100.2", 2); err != nil {
		t.Fatalf("no answer through the masquerade: %v", err)
	}
	capture := lan.Capture("eth0")
	defer capture.Close()
	if err := client.Ping("10.50.0.2", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Wait(5*time.Second, func(p lab.Packet) bool {
		return !p.Outgoing && p.ICMP != nil && p.Src == netip.MustParseAddr("10.8.0.2")
	}); err != nil {
		t.Fatalf("the LAN host did not see the client's own address: %v", err)
	}
	if err := m.SetMasquerades(ctx, "sslvpn", nil); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping("198.51.100.2", 1); err == nil {
		t.Fatal("the Internet host still answers with the masquerade removed")
	}
	if err := m.SetMasquerades(ctx, "sslvpn", []nft.Masquerade{{Source: netip.MustParsePrefix("2001:db8::/64")}}); !errors.Is(err, nft.ErrNFT) {
		t.Errorf("an IPv6 masquerade: %v, want ErrNFT", err)
	}
}
