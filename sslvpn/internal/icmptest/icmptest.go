// Package icmptest builds and answers IPv4 ICMP echo packets, for tests that push pings through a protocol
// engine without a kernel on the far side.
package icmptest

import (
	"encoding/binary"
	"net/netip"
)

// EchoReply builds the reply to an IPv4 ICMP echo request addressed to to.
func EchoReply(pkt []byte, to netip.Addr) ([]byte, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return nil, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < 20 || total > len(pkt) || total < ihl+8 || pkt[9] != 1 || pkt[ihl] != 8 {
		return nil, false
	}
	if netip.AddrFrom4([4]byte(pkt[16:20])) != to {
		return nil, false
	}
	r := append([]byte(nil), pkt[:total]...)
	copy(r[12:16], pkt[16:20])
	copy(r[16:20], pkt[12:16])
	r[8] = 64
	r[10], r[11] = 0, 0
	binary.BigEndian.PutUint16(r[10:], Checksum(r[:ihl]))
	r[ihl] = 0 // echo reply
	r[ihl+2], r[ihl+3] = 0, 0
	binary.BigEndian.PutUint16(r[ihl+2:], Checksum(r[ihl:]))
	return r, true
}

// EchoRequest builds an IPv4 ICMP echo request from src to dst.
func EchoRequest(src, dst netip.Addr, seq uint16, payload int) []byte {
	total := 20 + 8 + payload
	p := make([]byte, total)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	p[8] = 64
	p[9] = 1
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	binary.BigEndian.PutUint16(p[10:], Checksum(p[:20]))
	p[20] = 8
	binary.BigEndian.PutUint16(p[24:], 0x4242)
	binary.BigEndian.PutUint16(p[26:], seq)
	for i := 28; i < total; i++ {
		p[i] = byte(i)
	}
	binary.BigEndian.PutUint16(p[22:], Checksum(p[20:]))
	return p
}

// Checksum is the Internet checksum (RFC 1071) of b.
func Checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
