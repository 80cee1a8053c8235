package nft_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"toride/dataplane/nft"
	"toride/tests/lab"
)

// A clamp on the router's interface lowers the MSS both ends of a TCP connection through it agree on, in both
// directions (the SYN going out of the interface, the SYN-ACK coming in), and a clamp above the path's MSS
// changes nothing. On the wire: a SYN built with gopacket arrives at the far side with its MSS option lowered,
// never raised, and every other part of it as sent; the far side's SYN-ACK comes back clamped too.
func TestMSSClampOnForwardedSYNs(t *testing.T) {
	l := lab.New(t, "nft")
	a, r, b := l.Namespace("a"), l.Namespace("r"), l.Namespace("b")
	l.Link(a, "eth0", "10.8.1.2/24", r, "lan0", "10.8.1.1/24")
	l.Link(r, "tun0", "10.8.2.1/24", b, "eth0", "10.8.2.2/24")
	a.AddRoute("default", "10.8.1.1")
	b.AddRoute("default", "10.8.2.1")
	r.EnableForwarding()
	m, err := nft.New(nft.Options{NetnsPath: "/run/netns/" + r.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := lab.Within(t, 30*time.Second)
	atB, atA := b.Capture("eth0"), a.Capture("eth0")

	var ln net.Listener
	if err := doIn(b, func() (err error) { ln, err = net.Listen("tcp4", "10.8.2.2:8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// mss returns the segment size each end settled on for a new connection from a to b.
	mss := func() (client, server int) {
		t.Helper()
		var c net.Conn
		if err := doIn(a, func() (err error) { c, err = net.DialTimeout("tcp4", "10.8.2.2:8080", 5*time.Second); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return maxSeg(t, c), maxSeg(t, s)
	}
	c0, s0 := mss()
	if c0 < 1400 || s0 < 1400 {
		t.Fatalf("MSS %d/%d before any clamp on a 1500-byte path", c0, s0)
	}
	sp := &synProbe{t: t, from: a, atFar: atB, atNear: atA}
	sp.check("no clamp", 1460, 1460, 1460)
	if err := m.SetClamps(ctx, "ike", []nft.Clamp{{Interface: "tun0", MSS: 1200}}); err != nil {
		t.Fatal(err)
	}
	if c, s := mss(); c > 1200 || s > 1200 {
		t.Errorf("MSS %d (client) / %d (server) through a clamp of 1200", c, s)
	}
	sp.check("clamp 1200", 1460, 1200, 1200)
	sp.check("clamp 1200, SYN below it", 1000, 1000, 1200)
	sp.check("clamp 1200, SYN without MSS", 0, 0, 1200)
	if out := r.MustRun("nft", "list chain inet toride forward"); !strings.Contains(out, `oifname "tun0"`) || !strings.Contains(out, "maxseg size set 1200") {
		t.Errorf("forward chain:\n%s", out)
	}
	if err := m.SetClamps(ctx, "ike", []nft.Clamp{{Interface: "tun0", MSS: 1460}}); err != nil {
		t.Fatal(err)
	}
	if c, s := mss(); c != c0 || s != s0 {
		t.Errorf("MSS %d/%d with a clamp above the path's, want %d/%d as without", c, s, c0, s0)
	}
	sp.check("clamp 1460", 1460, 1460, 1460)
	if err := m.SetClamps(ctx, "ike", nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := r.Run("nft", "list chain inet toride forward"); strings.Contains(out, "maxseg") {
		t.Errorf("clamps left after removing them:\n%s", out)
	}
	if err := m.SetClamps(ctx, "ike", []nft.Clamp{{Interface: "tun0", MSS: 100}}); err == nil {
		t.Error("an MSS of 100 was accepted")
	}
}

func maxSeg(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v
}

// synProbe sends SYNs built with gopacket from a raw socket at one end and reads, from captures, what the far end
// received and what its SYN-ACK looked like when it came back.
type synProbe struct {
	t             *testing.T
	from          *lab.Netns
	atFar, atNear *lab.Capture
	port          uint16
}

// check sends a SYN to the listener with MSS option mss (0: none, and no other options either) and wants it to
// arrive with MSS arrived and otherwise as sent (TTL less one hop), and the listener's SYN-ACK to arrive back
// with MSS answered.
func (sp *synProbe) check(what string, mss, arrived, answered uint16) {
	t := sp.t
	t.Helper()
	sp.port++
	src := 40000 + sp.port
	var opts []layers.TCPOption
	if mss != 0 {
		opts = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, mss)},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0x30, 0x39, 0, 0, 0, 0}},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 8, 1, 2}, DstIP: net.IP{10, 8, 2, 2}}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: 8080, Seq: 0x1000 * uint32(src), SYN: true, Window: 64240, Options: opts}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	if err := sp.from.SendIP(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	syn, err := sp.atFar.Wait(5*time.Second, func(p lab.Packet) bool { return p.TCP != nil && p.TCP.SYN && !p.TCP.ACK && p.SrcPort == src })
	if err != nil {
		t.Fatalf("%s: the SYN never reached the far side: %v", what, err)
	}
	want := []layers.TCPOption{}
	for _, o := range opts {
		if o.OptionType == layers.TCPOptionKindMSS {
			o.OptionData = binary.BigEndian.AppendUint16(nil, arrived)
		}
		if o.OptionType != layers.TCPOptionKindNop {
			want = append(want, o)
		}
	}
	if syn.TCP.MSS != arrived || syn.Src.String() != "10.8.1.2" || syn.Dst.String() != "10.8.2.2" || syn.DstPort != 8080 ||
		syn.TTL != 63 || syn.TCP.Seq != tcp.Seq || !sameOptions(syn.TCP.Options, want) {
		t.Errorf("%s: sent MSS %d, want it to arrive as %d with the rest unchanged; arrived %v with options %v", what, mss, arrived, syn, syn.TCP.Options)
	}
	// The listener answering proves its TCP took the SYN, checksum and all, after the router rewrote it.
	synack, err := sp.atNear.Wait(5*time.Second, func(p lab.Packet) bool { return p.TCP != nil && p.TCP.SYN && p.TCP.ACK && p.DstPort == src })
	if err != nil {
		t.Fatalf("%s: no SYN-ACK came back: %v", what, err)
	}
	if synack.TCP.MSS != answered || synack.TCP.Ack != tcp.Seq+1 {
		t.Errorf("%s: SYN-ACK %v, want MSS %d", what, synack, answered)
	}
}

func sameOptions(got, want []layers.TCPOption) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].OptionType != want[i].OptionType || !bytes.Equal(got[i].OptionData, want[i].OptionData) {
			return false
		}
	}
	return true
}
