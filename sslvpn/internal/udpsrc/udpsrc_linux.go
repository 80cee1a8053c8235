package udpsrc

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enable asks the kernel for the local end of every datagram: IPV6_RECVPKTINFO on an IPv6 socket (a
// dual-stack one reports IPv4 datagrams through it too, as mapped addresses), IP_PKTINFO on an IPv4 one. It
// reports whether the socket is an IPv6 one.
func enable(uc *net.UDPConn) (v6 bool, err error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("udpsrc: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var domain int
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			return
		}
		if v6 = domain == unix.AF_INET6; v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	}); err != nil {
		return false, fmt.Errorf("udpsrc: %w", err)
	}
	if serr != nil {
		return v6, fmt.Errorf("udpsrc: enable packet info: %w", serr)
	}
	return v6, nil
}

const (
	hdrLen     = unix.SizeofCmsghdr      // cmsg_len (a size_t), cmsg_level, cmsg_type
	pktinfo4   = unix.SizeofInet4Pktinfo // ifindex (4), spec_dst (4), addr (4)
	pktinfo6   = unix.SizeofInet6Pktinfo // addr (16), ifindex (4)
	cmsgAlign  = int(unsafe.Sizeof(uintptr(0)))
	spaceInfo4 = (hdrLen + pktinfo4 + cmsgAlign - 1) &^ (cmsgAlign - 1)
	spaceInfo6 = (hdrLen + pktinfo6 + cmsgAlign - 1) &^ (cmsgAlign - 1)
)

// ParseControl returns the local end named by the IP_PKTINFO or IPV6_PKTINFO message in oob, the control
// messages of one received datagram; an IP_PKTINFO wins, as it names the address an IPv4 datagram was routed
// to (ipi_spec_dst). Other messages are skipped. It reads the headers in place and allocates nothing.
func ParseControl(oob []byte) (Local, error) {
	var v4, v6 Local
	for len(oob) > 0 {
		if len(oob) < hdrLen {
			return pick(v4, v6), ErrControl
		}
		mlen, level, typ := readHeader(oob)
		if mlen < hdrLen || mlen > uint64(len(oob)) {
			return pick(v4, v6), ErrControl
		}
		data := oob[hdrLen:mlen]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= pktinfo4:
			v4 = Local{Ifindex: int(int32(binary.NativeEndian.Uint32(data[0:4]))), Addr: netip.AddrFrom4([4]byte(data[4:8]))}
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= pktinfo6:
			v6 = Local{Addr: netip.AddrFrom16([16]byte(data[0:16])).Unmap(), Ifindex: int(int32(binary.NativeEndian.Uint32(data[16:20])))}
		}
		next := (int(mlen) + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return pick(v4, v6), nil
}

// readHeader decodes a struct cmsghdr by hand (the buffer need not be aligned): cmsg_len is a size_t, then
// cmsg_level and cmsg_type are ints.
func readHeader(b []byte) (mlen uint64, level, typ int32) {
	if cmsgAlign == 8 {
		mlen = binary.NativeEndian.Uint64(b[0:8])
	} else {
		mlen = uint64(binary.NativeEndian.Uint32(b[0:4]))
	}
	return mlen, int32(binary.NativeEndian.Uint32(b[cmsgAlign:])), int32(binary.NativeEndian.Uint32(b[cmsgAlign+4:]))
}

// writeHeader encodes a struct cmsghdr.
func writeHeader(b []byte, mlen int, level, typ int32) {
	if cmsgAlign == 8 {
		binary.NativeEndian.PutUint64(b[0:8], uint64(mlen))
	} else {
		binary.NativeEndian.PutUint32(b[0:4], uint32(mlen))
	}
	binary.NativeEndian.PutUint32(b[cmsgAlign:], uint32(level))
	binary.NativeEndian.PutUint32(b[cmsgAlign+4:], uint32(typ))
}

func pick(v4, v6 Local) Local {
	if v4.IsValid() {
		return v4
	}
	return v6
}

// marshalControl writes into oob (at least oobSize bytes) the control message that sends from l: IP_PKTINFO
// for an IPv4 address (taken by IPv4 sockets and, for IPv4 destinations, by dual-stack ones), IPV6_PKTINFO
// for an IPv6 one. It returns the length used.
func marshalControl(oob []byte, l Local) int {
	data := oob[hdrLen:]
	if l.Addr.Is4() {
		clear(oob[:spaceInfo4])
		writeHeader(oob, hdrLen+pktinfo4, unix.IPPROTO_IP, unix.IP_PKTINFO)
		binary.NativeEndian.PutUint32(data[0:4], uint32(int32(l.Ifindex)))
		a := l.Addr.As4()
		copy(data[4:8], a[:]) // ipi_spec_dst: the source the kernel uses
		return spaceInfo4
	}
	clear(oob[:spaceInfo6])
	writeHeader(oob, hdrLen+pktinfo6, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO)
	a := l.Addr.As16()
	copy(data[0:16], a[:])
	binary.NativeEndian.PutUint32(data[16:20], uint32(int32(l.Ifindex)))
	return spaceInfo6
}

// mmsghdr is the kernel's struct mmsghdr: a msghdr and the length received, padded to the msghdr's alignment.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// readSys is the recvmmsg state of a Reads: a header, an iovec, a sockaddr and control-message space per buffer,
// pointing into the Reads, and the one function the socket's RawConn runs (made once: a closure per call would
// be allocated).
type readSys struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oobs  [][oobSize]byte
	rc    syscall.RawConn
	recv  func(fd uintptr) bool
	n     int
	errno unix.Errno
}

func (s *readSys) init(bufs [][]byte) {
	n := len(bufs)
	s.hdrs, s.iovs, s.names, s.oobs = make([]mmsghdr, n), make([]unix.Iovec, n), make([]unix.RawSockaddrInet6, n), make([][oobSize]byte, n)
	for i := range s.hdrs {
		s.iovs[i].Base = &bufs[i][0]
		s.iovs[i].SetLen(len(bufs[i]))
		h := &s.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Control = &s.oobs[i][0]
	}
	s.recv = func(fd uintptr) bool {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EAGAIN, unix.EINTR:
			return false // wait until readable (or the deadline), then try again
		}
		s.n, s.errno = int(n), errno
		return true
	}
}

func (c *Conn) readBatch(r *Reads) (int, error) {
	s := &r.sys
	if s.rc == nil {
		rc, err := c.uc.SyscallConn()
		if err != nil {
			return 0, err
		}
		s.rc = rc
	}
	for {
		for i := range s.hdrs {
			h := &s.hdrs[i].hdr
			h.Namelen = unix.SizeofSockaddrInet6
			h.SetControllen(oobSize)
			h.Flags = 0
			s.hdrs[i].len = 0
		}
		if err := s.rc.Read(s.recv); err != nil {
			return 0, &net.OpError{Op: "read", Net: "udp", Source: c.uc.LocalAddr(), Err: err}
		}
		if s.errno != 0 {
			return 0, &net.OpError{Op: "read", Net: "udp", Source: c.uc.LocalAddr(), Err: s.errno}
		}
		for i := range s.n {
			h := &s.hdrs[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				r.Truncated++
				continue
			}
			local, _ := ParseControl(s.oobs[i][:h.hdr.Controllen])
			r.Datagrams = append(r.Datagrams, Datagram{B: r.bufs[i][:h.len], From: sockaddrPort(&s.names[i]), Local: local})
		}
		if len(r.Datagrams) > 0 {
			return len(r.Datagrams), nil
		}
		// Every datagram was too long: wait for the next.
	}
}

// sockaddrPort reads the sender from a sockaddr_in or sockaddr_in6 (the port in network order), unmapped.
func sockaddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p := uint16(port[0])<<8 | uint16(port[1])
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), p)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), p)
}
