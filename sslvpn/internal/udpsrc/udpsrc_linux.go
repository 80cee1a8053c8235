package udpsrc

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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
