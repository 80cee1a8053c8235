package xfrm

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// EventKind says what the kernel announced about an SA.
type EventKind int

// The XFRM monitor's events.
const (
	// SoftExpired: an SA reached its soft lifetime; charon rekeys it.
	SoftExpired EventKind = iota + 1
	// Expired: an SA reached its hard lifetime and is gone; if charon did not rekey it in time, its tunnel is down.
	Expired
	// Acquire: traffic matched a policy with no SA: the tunnel it needs is not up.
	Acquire
)

func (k EventKind) String() string {
	switch k {
	case SoftExpired:
		return "soft-expired"
	case Expired:
		return "expired"
	case Acquire:
		return "acquire"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one message of the kernel's XFRM monitor.
type Event struct {
	Kind     EventKind
	Src, Dst netip.Addr // the SA's outer addresses
	SPI      uint32     // 0 for Acquire
	Reqid    uint32     // 0 for Acquire
	IfID     uint32     // the SA's or policy's if_id; 0 for a policy-based tunnel
	// Traffic is, for Acquire, the destination of the packet's selector (the policy's, often 0.0.0.0/0).
	Traffic netip.Prefix
}

// The kernel's XFRM netlink message types and multicast groups (linux/xfrm.h).
const (
	msgAcquire   = 0x17
	msgExpire    = 0x18
	groupAcquire = 1
	groupExpire  = 2
	attrIfID     = 31 // XFRMA_IF_ID
)

// Sizes and offsets of the kernel's structures (linux/xfrm.h, x86-64 and arm64 alike: u64 aligned to 8).
const (
	selectorLen     = 56  // struct xfrm_selector
	userSAInfoLen   = 224 // struct xfrm_usersa_info
	userExpireLen   = 232 // struct xfrm_user_expire: usersa_info, hard, padding
	userAcquireLen  = 280 // struct xfrm_user_acquire
	saInfoIDOff     = selectorLen
	saInfoSaddrOff  = 80
	saInfoReqidOff  = 208
	saInfoFamilyOff = 212
	acquireSaddrOff = 24
	acquireSelOff   = 40
	selFamilyOff    = 40
	selPrefixDOff   = 42
	familyInet      = 2
	familyInet6     = 10
)

// parseMessage decodes a monitor message. ok is false for a message type it does not describe (the caller
// ignores it); an error is a message of a known type that is malformed. It never panics on any input.
func parseMessage(typ uint16, data []byte) (ev Event, ok bool, err error) {
	switch typ {
	case msgExpire:
		if len(data) < userExpireLen {
			return Event{}, false, fmt.Errorf("%w: expire message of %d bytes, want %d", ErrXFRM, len(data), userExpireLen)
		}
		fam := binary.NativeEndian.Uint16(data[saInfoFamilyOff:])
		ev.Kind = SoftExpired
		if data[userSAInfoLen] != 0 {
			ev.Kind = Expired
		}
		ev.Dst = addrOf(fam, data[saInfoIDOff:saInfoIDOff+16])
		ev.SPI = binary.BigEndian.Uint32(data[saInfoIDOff+16:])
		ev.Src = addrOf(fam, data[saInfoSaddrOff:saInfoSaddrOff+16])
		ev.Reqid = binary.NativeEndian.Uint32(data[saInfoReqidOff:])
		ev.IfID, err = ifIDOf(data[userExpireLen:])
	case msgAcquire:
		if len(data) < userAcquireLen {
			return Event{}, false, fmt.Errorf("%w: acquire message of %d bytes, want %d", ErrXFRM, len(data), userAcquireLen)
		}
		sel := data[acquireSelOff : acquireSelOff+selectorLen]
		fam := binary.NativeEndian.Uint16(sel[selFamilyOff:])
		ev.Kind = Acquire
		ev.Dst = addrOf(fam, data[0:16])
		ev.Src = addrOf(fam, data[acquireSaddrOff:acquireSaddrOff+16])
		if d := addrOf(fam, sel[0:16]); d.IsValid() {
			if p, perr := d.Prefix(int(sel[selPrefixDOff])); perr == nil {
				ev.Traffic = p
			}
		}
		ev.IfID, err = ifIDOf(data[userAcquireLen:])
	default:
		return Event{}, false, nil
	}
	if err != nil {
		return Event{}, false, err
	}
	return ev, true, nil
}

// addrOf reads an xfrm_address_t of the given address family; the zero Addr for another family.
func addrOf(family uint16, b []byte) netip.Addr {
	switch family {
	case familyInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case familyInet6:
		return netip.AddrFrom16([16]byte(b[:16]))
	}
	return netip.Addr{}
}

// ifIDOf finds XFRMA_IF_ID among the netlink attributes that follow a message's fixed part.
func ifIDOf(attrs []byte) (uint32, error) {
	for len(attrs) >= 4 {
		n := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & 0x3fff
		if n < 4 || n > len(attrs) {
			return 0, fmt.Errorf("%w: attribute of length %d in %d bytes", ErrXFRM, n, len(attrs))
		}
		if typ == attrIfID {
			if n < 8 {
				return 0, fmt.Errorf("%w: if_id attribute of length %d", ErrXFRM, n)
			}
			return binary.NativeEndian.Uint32(attrs[4:]), nil
		}
		n = (n + 3) &^ 3
		if n > len(attrs) {
			break
		}
		attrs = attrs[n:]
	}
	return 0, nil
}
