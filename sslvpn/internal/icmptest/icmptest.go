// Package icmptest builds and answers IPv4 ICMP echo packets with gopacket, for tests that push pings through a
// protocol engine without a kernel on the far side.
package icmptest

import (
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// EchoReply builds the reply to an IPv4 ICMP echo request addressed to to: addresses swapped, TTL 64, the
// request's identifier, sequence number and data. It reports false for anything else.
func EchoReply(pkt []byte, to netip.Addr) ([]byte, bool) {
	var (
		ip      layers.IPv4
		icmp    layers.ICMPv4
		payload gopacket.Payload
		decoded []gopacket.LayerType
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &ip, &icmp, &payload)
	if err := parser.DecodeLayers(pkt, &decoded); err != nil || len(decoded) < 2 || decoded[1] != layers.LayerTypeICMPv4 {
		return nil, false
	}
	if int(ip.Length) > len(pkt) || icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest {
		return nil, false
	}
	if dst, ok := netip.AddrFromSlice(ip.DstIP.To4()); !ok || dst != to {
		return nil, false
	}
	ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
	ip.TTL = 64
	icmp.TypeCode = layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0)
	reply, err := serialize(&ip, &icmp, gopacket.Payload(icmp.Payload))
	return reply, err == nil
}

// EchoRequest builds an IPv4 ICMP echo request from src to dst: TTL 64, identifier 0x4242, sequence number seq
// and payload bytes of data.
func EchoRequest(src, dst netip.Addr, seq uint16, payload int) []byte {
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(20 + 8 + i) // each byte its offset in the packet
	}
	s4, d4 := src.As4(), dst.As4()
	pkt, err := serialize(
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP(s4[:]), DstIP: net.IP(d4[:])},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x4242, Seq: seq},
		gopacket.Payload(data))
	if err != nil {
		panic("icmptest: " + err.Error()) // fixed, valid layers: a bug here, not in the test using it
	}
	return pkt
}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...)
	return buf.Bytes(), err
}
