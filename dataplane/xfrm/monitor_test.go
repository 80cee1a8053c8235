package xfrm

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// expireMsg builds a struct xfrm_user_expire as the kernel sends it, with an XFRMA_IF_ID attribute when ifID
// is not zero.
func expireMsg(src, dst netip.Addr, spi, reqid, ifID uint32, hard bool) []byte {
	b := make([]byte, userExpireLen)
	fam := uint16(familyInet)
	if dst.Is6() {
		fam = familyInet6
	}
	copy(b[saInfoIDOff:], dst.AsSlice())
	binary.BigEndian.PutUint32(b[saInfoIDOff+16:], spi)
	b[saInfoIDOff+20] = 50 // ESP
	copy(b[saInfoSaddrOff:], src.AsSlice())
	binary.NativeEndian.PutUint32(b[saInfoReqidOff:], reqid)
	binary.NativeEndian.PutUint16(b[saInfoFamilyOff:], fam)
	if hard {
		b[userSAInfoLen] = 1
	}
	return appendIfID(b, ifID)
}

func acquireMsg(src, dst netip.Addr, traffic netip.Prefix, ifID uint32) []byte {
	b := make([]byte, userAcquireLen)
	copy(b[0:], dst.AsSlice())
	copy(b[acquireSaddrOff:], src.AsSlice())
	sel := b[acquireSelOff:]
	copy(sel, traffic.Addr().AsSlice())
	binary.NativeEndian.PutUint16(sel[selFamilyOff:], familyInet)
	sel[selPrefixDOff] = byte(traffic.Bits())
	return appendIfID(b, ifID)
}

func appendIfID(b []byte, ifID uint32) []byte {
	// An attribute before it (XFRMA_MARK-like, 6 bytes of payload, padded) so the walk is exercised.
	b = append(b, 10, 0, 21, 0, 1, 2, 3, 4, 5, 6, 0, 0)
	if ifID != 0 {
		a := make([]byte, 8)
		binary.NativeEndian.PutUint16(a, 8)
		binary.NativeEndian.PutUint16(a[2:], attrIfID)
		binary.NativeEndian.PutUint32(a[4:], ifID)
		b = append(b, a...)
	}
	return b
}

func TestParseMessage(t *testing.T) {
	src, dst := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("203.0.113.2")
	for _, tc := range []struct {
		name string
		typ  uint16
		data []byte
		want Event
	}{
		{"soft expire", msgExpire, expireMsg(src, dst, 0xc0ffee01, 7, 11, false),
			Event{Kind: SoftExpired, Src: src, Dst: dst, SPI: 0xc0ffee01, Reqid: 7, IfID: 11}},
		{"hard expire, policy-based", msgExpire, expireMsg(src, dst, 0x1001, 2, 0, true),
			Event{Kind: Expired, Src: src, Dst: dst, SPI: 0x1001, Reqid: 2}},
		{"IPv6 SA", msgExpire, expireMsg(netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::"), 9, 1, 12, true),
			Event{Kind: Expired, Src: netip.MustParseAddr("2001:db8::2"), Dst: netip.MustParseAddr("2001:db8::"), SPI: 9, Reqid: 1, IfID: 12}},
		{"acquire", msgAcquire, acquireMsg(src, dst, netip.MustParsePrefix("0.0.0.0/0"), 11),
			Event{Kind: Acquire, Src: src, Dst: dst, IfID: 11, Traffic: netip.MustParsePrefix("0.0.0.0/0")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := parseMessage(tc.typ, tc.data)
			if err != nil || !ok || got != tc.want {
				t.Fatalf("parseMessage = %+v, %v, %v; want %+v", got, ok, err, tc.want)
			}
		})
	}
	if _, ok, err := parseMessage(0x10, make([]byte, 400)); ok || err != nil {
		t.Errorf("a new SA message (not watched) was taken: %v, %v", ok, err)
	}
	if _, _, err := parseMessage(msgExpire, make([]byte, userExpireLen-1)); err == nil {
		t.Error("a short expire message was accepted")
	}
	bad := expireMsg(src, dst, 1, 1, 0, true)
	bad = append(bad, 200, 0, attrIfID, 0) // an attribute longer than what is left
	if _, _, err := parseMessage(msgExpire, bad); err == nil {
		t.Error("a truncated attribute was accepted")
	}
}

func FuzzParseMessage(f *testing.F) {
	src, dst := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("203.0.113.2")
	f.Add(uint16(msgExpire), expireMsg(src, dst, 0xc0ffee01, 7, 11, true))
	f.Add(uint16(msgAcquire), acquireMsg(src, dst, netip.MustParsePrefix("10.2.0.0/24"), 11))
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		ev, ok, err := parseMessage(typ, data)
		if err != nil && ok {
			t.Fatalf("both an event and an error: %+v, %v", ev, err)
		}
		if ok && ev.Kind == 0 {
			t.Fatalf("an event with no kind: %+v", ev)
		}
	})
}
