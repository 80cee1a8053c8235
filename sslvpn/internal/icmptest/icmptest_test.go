package icmptest

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var client, gw = netip.MustParseAddr("10.8.0.2"), netip.MustParseAddr("10.8.0.1")

// TestEchoWireForm: the bytes are those of a plain IPv4 echo (no options, identification 0, checksums right),
// as the engines' tests have always pushed through.
func TestEchoWireForm(t *testing.T) {
	req := EchoRequest(client, gw, 7, 5)
	if got, want := hex.EncodeToString(req), "4500002100000000400166ca0a0800020a08000108005b7a424200071c1d1e1f20"; got != want {
		t.Errorf("request\n got %s\nwant %s", got, want)
	}
	reply, ok := EchoReply(req, gw)
	if !ok {
		t.Fatal("no reply")
	}
	if got, want := hex.EncodeToString(reply), "4500002100000000400166ca0a0800010a0800020000637a424200071c1d1e1f20"; got != want {
		t.Errorf("reply\n got %s\nwant %s", got, want)
	}
}

func TestEchoRoundTrip(t *testing.T) {
	req := EchoRequest(client, gw, 7, 56)
	checkEcho(t, req, layers.ICMPv4TypeEchoRequest, client, gw)
	reply, ok := EchoReply(req, gw)
	if !ok {
		t.Fatal("no reply to a request for gw")
	}
	checkEcho(t, reply, layers.ICMPv4TypeEchoReply, gw, client)
	if !bytes.Equal(reply[24:], req[24:]) {
		t.Fatal("the reply's identifier, sequence number or data differ from the request's")
	}

	// A request with IP options and a TTL of 1 is answered too; the options stay.
	withOpts := serializeT(t, &layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolICMPv4, SrcIP: client.AsSlice(), DstIP: gw.AsSlice(),
		Options: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}, {OptionType: 0, OptionLength: 1}}},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 9, Seq: 9}, gopacket.Payload("x"))
	reply, ok = EchoReply(withOpts, gw)
	if !ok {
		t.Fatal("no reply to a request with IP options")
	}
	checkEcho(t, reply, layers.ICMPv4TypeEchoReply, gw, client)
	if reply[0] != withOpts[0] || !bytes.Equal(reply[20:24], withOpts[20:24]) {
		t.Fatalf("reply header % x, request's % x: the options were lost", reply[:24], withOpts[:24])
	}

	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: client.AsSlice(), DstIP: gw.AsSlice()}
	udp.SetNetworkLayerForChecksum(ip)
	for _, tc := range []struct {
		name string
		pkt  []byte
		to   netip.Addr
	}{
		{"a request addressed to someone else", req, client},
		{"an echo reply", reply, client},
		{"a truncated request", req[:len(req)-1], gw},
		{"a UDP datagram", serializeT(t, ip, udp, gopacket.Payload("abcdefgh")), gw},
		{"an IPv6 packet", append([]byte{0x60}, req[1:]...), gw},
		{"nothing", nil, gw},
	} {
		if _, ok := EchoReply(tc.pkt, tc.to); ok {
			t.Errorf("answered %s", tc.name)
		}
	}
}

// checkEcho decodes pkt and wants an echo of typ from src to dst whose checksums are right: gopacket computes
// them anew and must find them unchanged.
func checkEcho(t *testing.T, pkt []byte, typ uint8, src, dst netip.Addr) {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil || p.ErrorLayer() != nil {
		t.Fatalf("not an ICMP packet: %v", p)
	}
	if icmp.TypeCode.Type() != typ || ip.SrcIP.String() != src.String() || ip.DstIP.String() != dst.String() || ip.TTL != 64 {
		t.Fatalf("got type %d from %v to %v, TTL %d", icmp.TypeCode.Type(), ip.SrcIP, ip.DstIP, ip.TTL)
	}
	again := serializeT(t, ip, icmp, gopacket.Payload(icmp.Payload))
	if !bytes.Equal(again, pkt) {
		t.Fatalf("checksums wrong:\n got % x\nwant % x", pkt, again)
	}
}

func serializeT(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	b, err := serialize(ls...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
