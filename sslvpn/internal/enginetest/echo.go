package enginetest

import (
	"net/netip"

	"toride/sslvpn/internal/icmptest"
)

// EchoUplink is a session's way to the LAN that answers ICMP echo requests addressed to Gateway itself, through
// Send (the session's SendPacket), and drops every other packet.
type EchoUplink struct {
	Gateway netip.Addr
	Send    func(pkt []byte) bool
	// Echoed, when not nil, is told of each reply sent, as long as it has room.
	Echoed chan<- struct{}
}

// Flush does nothing: WritePacket answers at once.
func (u *EchoUplink) Flush() {}

// WritePacket answers pkt if it is an echo request to the gateway.
func (u *EchoUplink) WritePacket(pkt []byte) error {
	reply, ok := icmptest.EchoReply(pkt, u.Gateway)
	if !ok || !u.Send(reply) || u.Echoed == nil {
		return nil
	}
	select {
	case u.Echoed <- struct{}{}:
	default:
	}
	return nil
}
