package lab

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// serialize builds a packet from layers with gopacket, lengths and checksums computed.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	var network gopacket.NetworkLayer
	for _, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			network = n
		}
	}
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(network)
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(network)
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(network)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 61, Protocol: proto, SrcIP: net.IP{198, 51, 100, 2}, DstIP: net.IP{203, 0, 113, 2}}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 7, NextHeader: next, SrcIP: net.ParseIP("2001:db8::2"), DstIP: net.ParseIP("2001:db8:1::9")}
}

func udp(src, dst layers.UDPPort) *layers.UDP { return &layers.UDP{SrcPort: src, DstPort: dst} }

// espBytes is the clear start of an ESP packet (SPI, sequence number) and some ciphertext.
func espBytes(spi, seq uint32) gopacket.Payload {
	return gopacket.Payload{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq),
		0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
}

func synOptions() []layers.TCPOption {
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 1, 0, 0, 0, 0}},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
}

// packetCases are packets built with gopacket and what the decoder must read from each; they also seed the fuzz
// targets.
func packetCases(t testing.TB) []struct {
	name string
	pkt  []byte
	want Packet
} {
	src4, dst4 := addr("198.51.100.2"), addr("203.0.113.2")
	src6, dst6 := addr("2001:db8::2"), addr("2001:db8:1::9")
	syn := &layers.TCP{SrcPort: 40000, DstPort: 8080, Seq: 1000, SYN: true, Window: 64240, Options: synOptions()}
	fragment := ip4(layers.IPProtocolTCP)
	fragment.Flags = layers.IPv4MoreFragments
	return []struct {
		name string
		pkt  []byte
		want Packet
	}{
		{"TCP SYN with options", serialize(t, ip4(layers.IPProtocolTCP), syn, gopacket.Payload(nil)), Packet{Src: src4, Dst: dst4, TTL: 61,
			Protocol: layers.IPProtocolTCP, SrcPort: 40000, DstPort: 8080, TCP: &TCPSegment{SYN: true, Seq: 1000, MSS: 1460, Options: []layers.TCPOption{
				synOptions()[0], synOptions()[1], synOptions()[2], synOptions()[4]}}}},
		{"TCP SYN-ACK without options, IPv6", serialize(t, ip6(layers.IPProtocolTCP),
			&layers.TCP{SrcPort: 443, DstPort: 50000, Seq: 7, Ack: 1001, SYN: true, ACK: true, Window: 1000}),
			Packet{Src: src6, Dst: dst6, TTL: 7, Protocol: layers.IPProtocolTCP, SrcPort: 443, DstPort: 50000,
				TCP: &TCPSegment{SYN: true, ACK: true, Seq: 7, Ack: 1001}}},
		{"ICMP echo request", serialize(t, ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x4242, Seq: 9}, gopacket.Payload("ping")),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolICMPv4, ICMP: &ICMPMessage{Type: 8, ID: 0x4242, Seq: 9}}},
		{"ICMPv6 echo reply", serialize(t, ip6(layers.IPProtocolICMPv6),
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoReply, 0)},
			&layers.ICMPv6Echo{Identifier: 3, SeqNumber: 4}, gopacket.Payload("pong")),
			Packet{Src: src6, Dst: dst6, TTL: 7, Protocol: layers.IPProtocolICMPv6, ICMP: &ICMPMessage{Type: 129, ID: 3, Seq: 4}}},
		{"ICMP destination unreachable", serialize(t, ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded)}),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolICMPv4, ICMP: &ICMPMessage{Type: 3, Code: 4}}},
		{"ESP", serialize(t, ip4(layers.IPProtocolESP), espBytes(0xc0ffee01, 5)),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolESP, ESP: &ESP{SPI: 0xc0ffee01, Seq: 5}}},
		{"ESP in UDP 4500", serialize(t, ip4(layers.IPProtocolUDP), udp(4500, 4500), espBytes(0xc0ffee02, 6)),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolUDP, SrcPort: 4500, DstPort: 4500,
				ESP: &ESP{SPI: 0xc0ffee02, Seq: 6, UDPEncapsulated: true}}},
		{"ESP in UDP from a NAT's port", serialize(t, ip4(layers.IPProtocolUDP), udp(61234, 4500), espBytes(1, 1)),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolUDP, SrcPort: 61234, DstPort: 4500,
				ESP: &ESP{SPI: 1, Seq: 1, UDPEncapsulated: true}}},
		{"ESP in UDP, IPv6", serialize(t, ip6(layers.IPProtocolUDP), udp(4500, 4500), espBytes(0xabcdef00, 1<<31)),
			Packet{Src: src6, Dst: dst6, TTL: 7, Protocol: layers.IPProtocolUDP, SrcPort: 4500, DstPort: 4500,
				ESP: &ESP{SPI: 0xabcdef00, Seq: 1 << 31, UDPEncapsulated: true}}},
		{"IKE on 4500 behind the non-ESP marker", serialize(t, ip4(layers.IPProtocolUDP), udp(4500, 4500),
			gopacket.Payload{0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0x2e, 0x20, 0x22, 0x08}),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolUDP, SrcPort: 4500, DstPort: 4500, IKE: true}},
		{"IKE on 500", serialize(t, ip4(layers.IPProtocolUDP), udp(500, 500), gopacket.Payload{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolUDP, SrcPort: 500, DstPort: 500, IKE: true}},
		{"NAT keepalive", serialize(t, ip4(layers.IPProtocolUDP), udp(4500, 4500), gopacket.Payload{0xff}),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolUDP, SrcPort: 4500, DstPort: 4500, NATKeepalive: true}},
		{"other UDP", serialize(t, ip4(layers.IPProtocolUDP), udp(5353, 53), gopacket.Payload{1, 2, 3}),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolUDP, SrcPort: 5353, DstPort: 53}},
		{"IPv4 fragment", serialize(t, fragment, gopacket.Payload{0x9c, 0x40, 0x1f, 0x90}),
			Packet{Src: src4, Dst: dst4, TTL: 61, Protocol: layers.IPProtocolTCP, Fragment: true}},
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

var cmpAddrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestDecodeIP(t *testing.T) {
	for _, tc := range packetCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeIP(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.want, cmpAddrs); diff != "" {
				t.Errorf("(-got +want)\n%s", diff)
			}
			// The same packet in an Ethernet frame, as a capture on a veth link reads it.
			frame := serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
				EthernetType: etherType(tc.pkt)}, gopacket.Payload(tc.pkt))
			got, err = DecodeFrame(frame)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.want, cmpAddrs); diff != "" {
				t.Errorf("in a frame (-got +want)\n%s", diff)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	syn := serialize(t, ip4(layers.IPProtocolTCP), &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true, Options: synOptions()})
	arp := serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: []byte{2, 0, 0, 0, 0, 1}, SourceProtAddress: []byte{10, 0, 0, 1},
			DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2}})
	badMSS := append([]byte(nil), syn...)
	badMSS[20+20+1] = 3 // the MSS option's length: 3 instead of 4
	for _, tc := range []struct {
		name  string
		frame bool
		data  []byte
		want  error
	}{
		{"nothing", false, nil, ErrNotIP},
		{"IP version 5", false, []byte{0x50, 0, 0, 20}, ErrNotIP},
		{"ARP", true, arp, ErrNotIP},
		{"an IPv4 header cut short", false, syn[:12], ErrMalformed},
		{"a TCP header cut short", false, syn[:30], ErrMalformed},
		{"an MSS option of 1 byte", false, badMSS, ErrMalformed},
		{"ESP of 4 bytes", false, serialize(t, ip4(layers.IPProtocolESP), gopacket.Payload{0, 0, 0, 1}), ErrMalformed},
		{"5 bytes on UDP 4500", false, serialize(t, ip4(layers.IPProtocolUDP), udp(4500, 4500), gopacket.Payload{1, 2, 3, 4, 5}), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.frame {
				_, err = DecodeFrame(tc.data)
			} else {
				_, err = DecodeIP(tc.data)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzDecodeIP: whatever the bytes, the decoder neither panics nor contradicts itself: the same packet in an
// Ethernet frame decodes the same, and what it calls ESP in UDP is on port 4500 with a SPI that is not zero.
func FuzzDecodeIP(f *testing.F) {
	for _, tc := range packetCases(f) {
		f.Add(tc.pkt)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		p, err := DecodeIP(pkt)
		if err != nil {
			if !errors.Is(err, ErrNotIP) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is neither ErrNotIP nor ErrMalformed", err)
			}
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != (pkt[0]>>4 == 4) {
			t.Fatalf("addresses %v → %v from an IPv%d packet", p.Src, p.Dst, pkt[0]>>4)
		}
		if e := p.ESP; e != nil && e.UDPEncapsulated && (p.Protocol != layers.IPProtocolUDP || p.SrcPort != PortNATT && p.DstPort != PortNATT || e.SPI == 0) {
			t.Fatalf("ESP in UDP in %v", p)
		}
		if p.IKE && p.ESP != nil {
			t.Fatalf("both IKE and ESP: %v", p)
		}
		frame := append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0}, pkt...)
		et := etherType(pkt)
		frame[12], frame[13] = byte(et>>8), byte(et)
		q, err := DecodeFrame(frame)
		if err != nil {
			t.Fatalf("in a frame: %v", err)
		}
		if diff := cmp.Diff(q, p, cmpAddrs); diff != "" {
			t.Fatalf("in a frame (-got +want)\n%s", diff)
		}
	})
}

func etherType(pkt []byte) layers.EthernetType {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return layers.EthernetTypeIPv6
	}
	return layers.EthernetTypeIPv4
}
