// Package udpsrc answers UDP datagrams from the address they arrived at.
//
// A box with several addresses on one socket bound to the wildcard address would answer from the kernel's
// preferred source for the way back, which need not be the address a client dialed; the client then drops the
// answer as coming from an unexpected peer. A Conn reads each datagram's local address and interface from its
// IP_PKTINFO or IPV6_PKTINFO control message, and a write sets them on the answer, so the kernel uses that
// address as the source and sends it out that interface. WriteBatch sends many datagrams in one system call
// (sendmmsg), each with its control message; ReadBatch reads what is queued in one (recvmmsg), each datagram
// with its local end. Neither reads nor writes allocate.
package udpsrc

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Local is the local end of a datagram: the address it was sent to and the interface it came in on. The zero
// value means unknown, and a write with it leaves the choice to the kernel.
type Local struct {
	Addr    netip.Addr // unmapped: an IPv4 address read on a dual-stack socket is IPv4
	Ifindex int
}

// IsValid reports whether l names an address.
func (l Local) IsValid() bool { return l.Addr.IsValid() }

// MsgConn is the part of *net.UDPConn a Conn uses to pass control messages; a fake of it stands in for the
// socket in tests.
type MsgConn interface {
	ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error)
	WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error)
}

// oobSize holds one IP_PKTINFO and one IPV6_PKTINFO message (a dual-stack socket may deliver both for an IPv4
// datagram) with room to spare.
const oobSize = 128

// Conn reads datagrams with their local end and writes answers from a given one. ReadFrom must be called by one
// goroutine at a time (it reuses its control-message buffer); WriteTo and WriteBatch are safe for concurrent use.
// A Conn over a packet connection without control messages reads a zero Local and writes as the connection's
// WriteTo.
type Conn struct {
	pc  net.PacketConn
	mc  MsgConn      // nil when pc has no control messages
	uc  *net.UDPConn // mc when it is one: called directly, so the control message stays on the stack
	bw  batchWriter  // uc's batched writes (sendmmsg on Linux); nil without uc
	oob [oobSize]byte
}

// batchWriter is what x/net's ipv4.PacketConn and ipv6.PacketConn have in common for batched writes.
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// New wraps pc. For a *net.UDPConn it enables the reception of IP_PKTINFO and IPV6_PKTINFO; if the system
// refuses, the Conn works without them and New returns the Conn and the error, for the caller to report.
// The caller keeps ownership of pc.
func New(pc net.PacketConn) (*Conn, error) {
	c := &Conn{pc: pc}
	if uc, ok := pc.(*net.UDPConn); ok {
		v6, err := enable(uc)
		if err != nil {
			return c, err
		}
		c.mc, c.uc = uc, uc
		if v6 {
			c.bw = ipv6.NewPacketConn(uc)
		} else {
			c.bw = ipv4.NewPacketConn(uc)
		}
		return c, nil
	}
	if mc, ok := pc.(MsgConn); ok {
		c.mc = mc
	}
	return c, nil
}

// PacketConn returns the wrapped connection.
func (c *Conn) PacketConn() net.PacketConn { return c.pc }

// ReadFrom reads one datagram into b and returns its length, its sender (unmapped) and its local end.
func (c *Conn) ReadFrom(b []byte) (int, netip.AddrPort, Local, error) {
	if c.mc == nil {
		n, a, err := c.pc.ReadFrom(b)
		return n, unmap(addrPortOf(a)), Local{}, err
	}
	n, oobn, _, from, err := c.mc.ReadMsgUDPAddrPort(b, c.oob[:])
	if err != nil {
		return n, unmap(from), Local{}, err
	}
	l, _ := ParseControl(c.oob[:oobn])
	return n, unmap(from), l, nil
}

// WriteTo sends b to to, from local when it is valid.
func (c *Conn) WriteTo(b []byte, to netip.AddrPort, local Local) (int, error) {
	switch {
	case c.uc != nil:
		// Called on the concrete type, so that oob stays on the stack.
		var oob [oobSize]byte
		n, _, err := c.uc.WriteMsgUDPAddrPort(b, oob[:control(oob[:], local)], to)
		return n, err
	case c.mc != nil:
		oob := make([]byte, oobSize)
		n, _, err := c.mc.WriteMsgUDPAddrPort(b, oob[:control(oob, local)], to)
		return n, err
	}
	return c.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
}

// Batch is one writer's reusable state for WriteBatch: the messages, their control message and destination.
// The zero value is ready; its messages are made at the first write of more than one datagram (a writer that
// never has more than one waiting never pays for them) and grow to the largest batch written. Not safe for
// concurrent use: each writer has its own, and it must not move once used (a field of a struct on the heap).
type Batch struct {
	msgs []ipv4.Message
	iov  [][1][]byte
	oob  [oobSize]byte
	ip   [16]byte
	addr net.UDPAddr
}

// WriteBatch sends every datagram of bufs to to, each from local as WriteTo does, in as few system calls as the
// system allows: one sendmmsg on Linux, each message with its control message. It returns how many were sent;
// an error stops at the first datagram not sent. Once b has held a batch as large, it allocates nothing.
func (c *Conn) WriteBatch(b *Batch, bufs [][]byte, to netip.AddrPort, local Local) (int, error) {
	if c.bw == nil || len(bufs) <= 1 {
		for i, buf := range bufs {
			if _, err := c.WriteTo(buf, to, local); err != nil {
				return i, err
			}
		}
		return len(bufs), nil
	}
	oob := b.oob[:control(b.oob[:], local)]
	// A dual-stack socket takes an IPv4 destination as it is (the kernel hands it to IPv4's sendmsg, with
	// IP_PKTINFO): x/net writes a sockaddr_in for a 4-byte address.
	if a := to.Addr().Unmap(); a.Is4() {
		a4 := a.As4()
		b.addr.IP, b.addr.Zone = append(b.ip[:0], a4[:]...), ""
	} else {
		a16 := a.As16()
		b.addr.IP = append(b.ip[:0], a16[:]...)
		b.addr.Zone = a.Zone()
	}
	b.addr.Port = int(to.Port())
	if len(bufs) > len(b.msgs) {
		b.msgs, b.iov = make([]ipv4.Message, len(bufs)), make([][1][]byte, len(bufs))
	}
	msgs := b.msgs[:len(bufs)]
	for i := range msgs {
		b.iov[i][0] = bufs[i]
		msgs[i] = ipv4.Message{Buffers: b.iov[i][:], OOB: oob, Addr: &b.addr}
	}
	sent := 0
	for sent < len(msgs) {
		n, err := c.bw.WriteBatch(msgs[sent:], 0)
		sent += n
		if err != nil {
			return sent, err
		}
		if n == 0 {
			break
		}
	}
	for i := range msgs {
		b.iov[i][0] = nil // the buffers are the caller's again
	}
	return sent, nil
}

// control writes into oob the control message that sends from local, if any, and returns its length.
func control(oob []byte, local Local) int {
	if !local.IsValid() {
		return 0
	}
	return marshalControl(oob, local)
}

// ErrControl: a control message is malformed.
var ErrControl = errors.New("udpsrc: malformed control message")

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Datagram is one datagram of a batch read: its bytes, in the batch's buffer, its sender (unmapped) and its local
// end.
type Datagram struct {
	B     []byte
	From  netip.AddrPort
	Local Local
}

// Reads is one reader's reusable state for ReadBatch: a buffer per datagram and the system's message headers.
// Not safe for concurrent use; it must not move once used (a field of a struct on the heap, or its own).
type Reads struct {
	// Datagrams holds the last ReadBatch's datagrams, valid until the next call.
	Datagrams []Datagram
	// Truncated is how many datagrams the last ReadBatch dropped for being longer than a buffer.
	Truncated uint64

	bufs [][]byte
	sys  readSys
}

// NewReads makes the state for batches of up to n datagrams of up to size bytes each.
func NewReads(n, size int) *Reads {
	r := &Reads{Datagrams: make([]Datagram, 0, n), bufs: make([][]byte, n)}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, size)
	}
	r.sys.init(r.bufs)
	return r
}

// ReadBatch waits for a datagram, then reads it and as many more as are queued, up to the batch, into
// r.Datagrams: one recvmmsg on Linux (with each datagram's local end), one read elsewhere. It returns how many it
// read; a datagram longer than a buffer is dropped and counted in r.Truncated. It allocates nothing, and obeys the
// connection's read deadline as ReadFrom does.
func (c *Conn) ReadBatch(r *Reads) (int, error) {
	r.Datagrams, r.Truncated = r.Datagrams[:0], 0
	if c.uc == nil {
		return c.readOne(r)
	}
	return c.readBatch(r)
}

// readOne is ReadBatch without batched reads: one datagram, with ReadFrom.
func (c *Conn) readOne(r *Reads) (int, error) {
	n, from, local, err := c.ReadFrom(r.bufs[0])
	if err != nil {
		return 0, err
	}
	r.Datagrams = append(r.Datagrams, Datagram{B: r.bufs[0][:n], From: from, Local: local})
	return 1, nil
}
