package lab

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestCaptureSeesOneLinkBothWays: an echo request built with gopacket and sent from a raw socket crosses the
// link; the capture on the far end sees it arrive unchanged and the kernel's reply leave, and nothing of the
// namespace's other link.
func TestCaptureSeesOneLinkBothWays(t *testing.T) {
	l := New(t)
	a, b, c := l.Namespace("a"), l.Namespace("b"), l.Namespace("c")
	l.Link(a, "eth0", "10.77.0.1/24", b, "eth0", "10.77.0.2/24")
	l.Link(b, "eth1", "10.78.0.1/24", c, "eth0", "10.78.0.2/24")
	capture := b.Capture("eth0")

	req := serialize(t, &layers.IPv4{Version: 4, TTL: 33, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP{10, 77, 0, 1}, DstIP: net.IP{10, 77, 0, 2}},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x7e57, Seq: 1}, gopacket.Payload("probe"))
	if err := a.SendIP(req); err != nil {
		t.Fatal(err)
	}
	echo := func(typ uint8) func(Packet) bool {
		return func(p Packet) bool { return p.ICMP != nil && p.ICMP.Type == typ && p.ICMP.ID == 0x7e57 }
	}
	in, err := capture.Wait(5*time.Second, echo(layers.ICMPv4TypeEchoRequest))
	if err != nil {
		t.Fatal(err)
	}
	if in.Outgoing || in.Src != netip.MustParseAddr("10.77.0.1") || in.Dst != netip.MustParseAddr("10.77.0.2") || in.TTL != 33 || in.ICMP.Seq != 1 {
		t.Errorf("the request arrived as %v", in)
	}
	out, err := capture.Wait(5*time.Second, echo(layers.ICMPv4TypeEchoReply))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Outgoing || out.Src != in.Dst || out.Dst != in.Src || out.ICMP.Seq != 1 {
		t.Errorf("the reply left as %v", out)
	}

	if err := b.Ping("10.78.0.2", 1); err != nil {
		t.Fatal(err)
	}
	if p, err := capture.Wait(300*time.Millisecond, func(p Packet) bool { return p.Dst == netip.MustParseAddr("10.78.0.2") }); err == nil {
		t.Errorf("the capture on eth0 saw a packet of eth1: %v", p)
	}
	capture.Close()
	capture.Close()
	n := len(capture.Packets())
	if err := a.Ping("10.77.0.2", 1); err != nil {
		t.Fatal(err)
	}
	if got := len(capture.Packets()); got != n {
		t.Errorf("%d packets captured after Close, %d before", got, n)
	}
	if _, err := capture.Wait(time.Second, func(Packet) bool { return false }); err == nil {
		t.Error("Wait on a closed capture found a packet nothing matches")
	}
}
