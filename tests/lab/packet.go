package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Errors of the packet decoders.
var (
	ErrNotIP     = errors.New("lab: not an IP packet")
	ErrMalformed = errors.New("lab: malformed packet")
)

// The UDP ports of IKE: 500, and 4500 where ESP and IKE share a port after NAT traversal (RFC 3948).
const (
	PortIKE     = 500
	PortNATT    = 4500
	nonESPBytes = 4 // the non-ESP marker: four zero bytes where ESP would have its SPI
)

// Packet is what a test asserts of one IP packet: its addresses and TTL, and what the decoders understand of
// its transport: TCP ports, flags and options; ICMP type and echo fields; ESP's SPI, plain or in UDP.
type Packet struct {
	// Outgoing is set by a Capture: the link sent the frame (else it received it).
	Outgoing bool
	Src, Dst netip.Addr
	TTL      uint8 // the IPv4 TTL or the IPv6 hop limit
	Protocol layers.IPProtocol
	// Fragment: an IPv4 fragment, whose transport header, if any, is not decoded.
	Fragment         bool
	SrcPort, DstPort uint16 // TCP and UDP
	TCP              *TCPSegment
	ICMP             *ICMPMessage
	ESP              *ESP
	// IKE: a UDP datagram to or from port 500, or one to or from 4500 that starts with the non-ESP marker.
	IKE bool
	// NATKeepalive: the one-byte 0xFF datagram that keeps a NAT mapping of UDP 4500 alive.
	NATKeepalive bool
}

// TCPSegment is the TCP header of a packet.
type TCPSegment struct {
	SYN, ACK, RST, FIN bool
	Seq, Ack           uint32
	// MSS is the maximum segment size option, 0 when absent.
	MSS uint16
	// Options are the header's options in order, without padding (end of list and no-operation).
	Options []layers.TCPOption
}

// ICMPMessage is the ICMP (or ICMPv6) header of a packet; ID and Seq are those of an echo request or reply.
type ICMPMessage struct {
	Type, Code uint8
	ID, Seq    uint16
}

// ESP is the clear part of an ESP packet.
type ESP struct {
	SPI, Seq uint32
	// UDPEncapsulated: carried in UDP (port 4500 after NAT traversal, RFC 3948) rather than as IP protocol 50.
	UDPEncapsulated bool
}

// DecodeFrame decodes an Ethernet frame, as an AF_PACKET socket on a veth link reads it. A frame that carries
// no IP packet (ARP, say) is ErrNotIP.
func DecodeFrame(frame []byte) (Packet, error) {
	return decode(frame, layers.LayerTypeEthernet)
}

// DecodeIP decodes an IP packet, IPv4 or IPv6 by its version, as a TUN device reads or writes it.
func DecodeIP(pkt []byte) (Packet, error) {
	if len(pkt) == 0 {
		return Packet{}, ErrNotIP
	}
	switch pkt[0] >> 4 {
	case 4:
		return decode(pkt, layers.LayerTypeIPv4)
	case 6:
		return decode(pkt, layers.LayerTypeIPv6)
	}
	return Packet{}, fmt.Errorf("%w: version %d", ErrNotIP, pkt[0]>>4)
}

// decode reads the layers up to the transport's; it stops, without an error, at the first layer it does not
// know (an application's, a fragment's, ESP's), which the clear parts of ESP are then read from.
func decode(data []byte, first gopacket.LayerType) (Packet, error) {
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		udp     layers.UDP
		icmp4   layers.ICMPv4
		icmp6   layers.ICMPv6
		echo6   layers.ICMPv6Echo
		payload gopacket.Payload
		decoded []gopacket.LayerType
	)
	parser := gopacket.NewDecodingLayerParser(first, &eth, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6, &echo6, &payload)
	parser.IgnoreUnsupported = true
	err := parser.DecodeLayers(data, &decoded)
	var p Packet
	var ipPayload []byte
layers:
	for _, lt := range decoded {
		switch lt {
		case layers.LayerTypeIPv4, layers.LayerTypeIPv6:
			if p.Src.IsValid() {
				break layers // a packet tunnelled in this one (IP in IP): the outer one is what the link carries
			}
		}
		switch lt {
		case layers.LayerTypeIPv4:
			p.Src, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
			p.Dst, _ = netip.AddrFromSlice(ip4.DstIP.To4())
			p.TTL, p.Protocol, ipPayload = ip4.TTL, ip4.Protocol, ip4.Payload
			p.Fragment = ip4.Flags&layers.IPv4MoreFragments != 0 || ip4.FragOffset != 0
		case layers.LayerTypeIPv6:
			p.Src, _ = netip.AddrFromSlice(ip6.SrcIP)
			p.Dst, _ = netip.AddrFromSlice(ip6.DstIP)
			p.TTL, p.Protocol, ipPayload = ip6.HopLimit, ip6.NextHeader, ip6.Payload
			if ip6.HopByHop != nil {
				p.Protocol = ip6.HopByHop.NextHeader
			}
		case layers.LayerTypeTCP:
			p.SrcPort, p.DstPort = uint16(tcp.SrcPort), uint16(tcp.DstPort)
			seg := &TCPSegment{SYN: tcp.SYN, ACK: tcp.ACK, RST: tcp.RST, FIN: tcp.FIN, Seq: tcp.Seq, Ack: tcp.Ack}
			for _, o := range tcp.Options {
				if o.OptionType == layers.TCPOptionKindEndList || o.OptionType == layers.TCPOptionKindNop {
					continue
				}
				o.OptionData = append([]byte(nil), o.OptionData...) // tcp's options are reused by the next decode
				seg.Options = append(seg.Options, o)
				if o.OptionType == layers.TCPOptionKindMSS {
					if len(o.OptionData) != 2 {
						return p, fmt.Errorf("%w: MSS option of %d bytes", ErrMalformed, len(o.OptionData))
					}
					seg.MSS = binary.BigEndian.Uint16(o.OptionData)
				}
			}
			p.TCP = seg
		case layers.LayerTypeUDP:
			p.SrcPort, p.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
			if err := p.decodeUDPPayload(udp.Payload); err != nil {
				return p, err
			}
		case layers.LayerTypeICMPv4:
			p.ICMP = &ICMPMessage{Type: icmp4.TypeCode.Type(), Code: icmp4.TypeCode.Code(), ID: icmp4.Id, Seq: icmp4.Seq}
		case layers.LayerTypeICMPv6:
			p.ICMP = &ICMPMessage{Type: icmp6.TypeCode.Type(), Code: icmp6.TypeCode.Code()}
		case layers.LayerTypeICMPv6Echo:
			p.ICMP.ID, p.ICMP.Seq = echo6.Identifier, echo6.SeqNumber
		}
	}
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !p.Src.IsValid() {
		return p, ErrNotIP
	}
	if p.Protocol == layers.IPProtocolESP && !p.Fragment {
		if len(ipPayload) < 8 {
			return p, fmt.Errorf("%w: ESP of %d bytes", ErrMalformed, len(ipPayload))
		}
		p.ESP = &ESP{SPI: binary.BigEndian.Uint32(ipPayload), Seq: binary.BigEndian.Uint32(ipPayload[4:])}
	}
	return p, nil
}

// decodeUDPPayload tells IKE, NAT keepalives and UDP-encapsulated ESP apart on the IKE ports (RFC 3948: on 4500
// a payload that starts with four zero bytes is IKE, a single 0xFF byte a keepalive, anything else ESP, whose
// SPI is never zero).
func (p *Packet) decodeUDPPayload(b []byte) error {
	switch {
	case p.SrcPort == PortIKE || p.DstPort == PortIKE:
		p.IKE = true
	case p.SrcPort == PortNATT || p.DstPort == PortNATT:
		switch {
		case len(b) == 1 && b[0] == 0xff:
			p.NATKeepalive = true
		case len(b) >= nonESPBytes && binary.BigEndian.Uint32(b) == 0:
			p.IKE = true
		case len(b) < 8:
			return fmt.Errorf("%w: %d bytes on UDP %d are neither IKE, a keepalive nor ESP", ErrMalformed, len(b), PortNATT)
		default:
			p.ESP = &ESP{SPI: binary.BigEndian.Uint32(b), Seq: binary.BigEndian.Uint32(b[4:]), UDPEncapsulated: true}
		}
	}
	return nil
}

// String is a one-line summary for test logs.
func (p Packet) String() string {
	var b strings.Builder
	if p.Outgoing {
		b.WriteString("out ")
	}
	fmt.Fprintf(&b, "%v → %v ttl %d %v", p.Src, p.Dst, p.TTL, p.Protocol)
	if p.SrcPort != 0 || p.DstPort != 0 {
		fmt.Fprintf(&b, " %d→%d", p.SrcPort, p.DstPort)
	}
	switch {
	case p.Fragment:
		b.WriteString(" fragment")
	case p.TCP != nil:
		fmt.Fprintf(&b, " syn=%v ack=%v mss=%d", p.TCP.SYN, p.TCP.ACK, p.TCP.MSS)
	case p.ICMP != nil:
		fmt.Fprintf(&b, " type %d code %d id %d seq %d", p.ICMP.Type, p.ICMP.Code, p.ICMP.ID, p.ICMP.Seq)
	case p.ESP != nil:
		fmt.Fprintf(&b, " ESP spi %08x seq %d udp=%v", p.ESP.SPI, p.ESP.Seq, p.ESP.UDPEncapsulated)
	case p.IKE:
		b.WriteString(" IKE")
	case p.NATKeepalive:
		b.WriteString(" NAT keepalive")
	}
	return b.String()
}
