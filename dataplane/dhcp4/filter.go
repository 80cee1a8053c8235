package dhcp4

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// clientPort is the DHCP client's UDP port, where servers answer.
const clientPort = 68

// replyFilter is the packet socket's filter: it passes UDP datagrams to port 68 in unfragmented IPv4 packets
// (the socket is SOCK_DGRAM, so a packet starts at its IP header), and nothing else. Without it the socket gets a
// copy of every IPv4 packet the interface receives for as long as the client runs, which on the uplink is every
// tunnel packet: CPU spent for nothing, in the default configuration (eth0 by DHCP).
var replyFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadAbsolute{Off: 9, Size: 1}, // IP protocol
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: 6},
	bpf.LoadAbsolute{Off: 6, Size: 2},                           // flags and fragment offset
	bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 4}, // a later fragment has no UDP header
	bpf.LoadMemShift{Off: 0},                                    // X = the IP header's length
	bpf.LoadIndirect{Off: 2, Size: 2},                           // UDP destination port
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: clientPort, SkipFalse: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err)
	}
	return raw
}

// openRaw is nclient4.New's exchange over a packet socket that carries the server's answers alone (replyFilter,
// set before the socket is bound, so nothing else is ever queued on it).
func openRaw(ifname string, opts ...nclient4.ClientOpt) (exchange, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: replyFilter})
	if err != nil {
		return nil, err
	}
	c, err := nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(conn, &net.UDPAddr{Port: clientPort}), ifc.HardwareAddr, opts...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}
