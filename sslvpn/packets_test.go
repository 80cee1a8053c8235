package sslvpn

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"toride/dataplane/tun/tuntest"
	"toride/sslvpn/datapath"
	"toride/tests/lab"
)

// TestClientPacketsReachTheDeviceUnchanged: over OpenVPN and AnyConnect alike, what a client sends from the
// address it was given to a network pushed to it reaches the server's device byte for byte (addresses, TTL,
// checksums as sent: the kernel routes them, the datapath does not); what it sends from any other address
// (another client's, the gateway's, a free one of the pool, the LAN's own) is dropped and counted, and so is
// IPv6, which no pool hands out. Packets are built with gopacket.
func TestClientPacketsReachTheDeviceUnchanged(t *testing.T) {
	tc := newTestConcentrator(t)
	lanNet, dnsHost := netip.MustParsePrefix("10.50.0.0/24"), netip.MustParsePrefix("192.0.2.53/32")
	s := tc.start(t, &ServerConfig{MaxSessions: 10, Routes: []netip.Prefix{lanNet, dnsHost}})
	dev := tc.tuns.Get("vpn-main")
	_, alice := mustConnect(t, s, "alice")
	carol, err := connectAnyConnect(s, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(alice.Routes, lanNet) || !slices.Contains(carol.grant.Routes, lanNet) {
		t.Fatalf("pushed routes %v (OpenVPN) and %v (AnyConnect), want %v among them", alice.Routes, carol.grant.Routes, lanNet)
	}
	gw, lanHost := netip.MustParseAddr("10.8.0.1"), netip.MustParseAddr("10.50.0.7")
	clients := []struct {
		name   string
		addr   netip.Addr
		uplink interface {
			WritePacket([]byte) error
			Flush()
		}
	}{
		{"OpenVPN", alice.Address.Addr(), alice.Uplink},
		{"AnyConnect", carol.grant.Address.Addr(), carol.grant.Uplink},
	}
	free := clients[1].addr.Next()
	spoofed, malformed := uint64(0), uint64(0)

	for i, c := range clients {
		other := clients[1-i].addr
		t.Run(c.name, func(t *testing.T) {
			passes := []struct {
				name string
				pkt  []byte
			}{
				{"ICMP echo to a LAN host", ipv4Packet(t, c.addr, lanHost, 64, 0, icmpEcho(1))},
				{"TCP SYN with TTL 1", ipv4Packet(t, c.addr, lanNet.Addr().Next(), 1, 0,
					&layers.TCP{SrcPort: 50000, DstPort: 443, Seq: 7, SYN: true, Window: 64240, Options: []layers.TCPOption{
						{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0x6d}}}})},
				{"UDP with TTL 255 and don't-fragment to the pushed DNS host", ipv4Packet(t, c.addr, dnsHost.Addr(), 255, layers.IPv4DontFragment,
					&layers.UDP{SrcPort: 5353, DstPort: 53}, gopacket.Payload("query"))},
				{"1400 bytes of UDP", ipv4Packet(t, c.addr, netip.MustParseAddr("10.50.0.254"), 17, 0,
					&layers.UDP{SrcPort: 9, DstPort: 9}, gopacket.Payload(bytes.Repeat([]byte{0xa5}, 1400-28)))},
			}
			for _, p := range passes {
				if err := c.uplink.WritePacket(p.pkt); err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				go c.uplink.Flush() // as the engine does at the end of what it read; the test device waits for written()
				got := written(t, dev)
				if !bytes.Equal(got, p.pkt) {
					t.Fatalf("%s: written to the device\n% x\nsent\n% x", p.name, got, p.pkt)
				}
				sent, _ := lab.DecodeIP(p.pkt)
				if dec, err := lab.DecodeIP(got); err != nil || dec.Src != c.addr || dec.Dst != sent.Dst || dec.TTL != sent.TTL {
					t.Fatalf("%s: the device got %v (%v), sent %v", p.name, dec, err, sent)
				}
			}

			drops := []struct {
				name string
				pkt  []byte
				want error
			}{
				{"from the other client's address", ipv4Packet(t, other, lanHost, 64, 0, icmpEcho(2)), datapath.ErrSpoofed},
				{"from the gateway's address", ipv4Packet(t, gw, lanHost, 64, 0, icmpEcho(3)), datapath.ErrSpoofed},
				{"from a free address of the pool", ipv4Packet(t, free, lanHost, 64, 0, icmpEcho(4)), datapath.ErrSpoofed},
				{"from the LAN host to itself", ipv4Packet(t, lanHost, lanHost, 64, 0, icmpEcho(5)), datapath.ErrSpoofed},
				{"from 0.0.0.0", ipv4Packet(t, netip.IPv4Unspecified(), lanHost, 64, 0, icmpEcho(6)), datapath.ErrSpoofed},
				{"IPv6", ipv6Packet(t, netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8::7")), datapath.ErrMalformed},
			}
			for _, d := range drops {
				if err := c.uplink.WritePacket(d.pkt); !errors.Is(err, d.want) {
					t.Errorf("%s: %v, want %v", d.name, err, d.want)
				}
				if d.want == datapath.ErrSpoofed {
					spoofed++
				} else {
					malformed++
				}
			}
			// The packets are written in order: if the next one out is this marker, none of the dropped ones got
			// through.
			marker := ipv4Packet(t, c.addr, lanHost, 64, 0, icmpEcho(99))
			if err := c.uplink.WritePacket(marker); err != nil {
				t.Fatal(err)
			}
			go c.uplink.Flush()
			if got := written(t, dev); !bytes.Equal(got, marker) {
				p, _ := lab.DecodeIP(got)
				t.Fatalf("a dropped packet reached the device: %v", p)
			}
		})
	}
	st := tc.Status()[0].Datapath
	if st.Spoofed != spoofed || st.Malformed != malformed || st.FromClients != 10 {
		t.Fatalf("counted %d spoofed, %d malformed, %d written; want %d, %d, 10", st.Spoofed, st.Malformed, st.FromClients, spoofed, malformed)
	}
}

// written is the next packet the datapath writes to dev.
func written(t *testing.T, dev *tuntest.Device) []byte {
	t.Helper()
	select {
	case got := <-dev.Written:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was written to the device")
		return nil
	}
}

func icmpEcho(seq uint16) gopacket.SerializableLayer {
	return &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x5a, Seq: seq}
}

// ipv4Packet builds an IPv4 packet from src to dst with gopacket, checksums computed.
func ipv4Packet(t *testing.T, src, dst netip.Addr, ttl uint8, flags layers.IPv4Flag, upper ...gopacket.SerializableLayer) []byte {
	t.Helper()
	proto := layers.IPProtocolICMPv4
	ip := &layers.IPv4{Version: 4, TTL: ttl, Flags: flags, Id: 0x1234, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	for _, l := range upper {
		switch l := l.(type) {
		case *layers.TCP:
			proto = layers.IPProtocolTCP
			l.SetNetworkLayerForChecksum(ip)
		case *layers.UDP:
			proto = layers.IPProtocolUDP
			l.SetNetworkLayerForChecksum(ip)
		}
	}
	ip.Protocol = proto
	return serializeLayers(t, append([]gopacket.SerializableLayer{ip}, upper...)...)
}

func ipv6Packet(t *testing.T, src, dst netip.Addr) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	return serializeLayers(t, ip, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
}

func serializeLayers(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
