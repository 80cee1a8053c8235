package wire

import (
	"bytes"
	"testing"
)

// FuzzControlPacket: parsing never panics, and whatever parses encodes back to the same bytes.
func FuzzControlPacket(f *testing.F) {
	f.Add((&ControlPacket{Opcode: ControlHardResetClientV2, SessionID: SessionID{1}}).Append(nil))
	f.Add((&ControlPacket{Opcode: AckV1, SessionID: SessionID{1}, NumAcks: 2, RemoteSessionID: SessionID{2}}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p ControlPacket
		if err := p.Parse(b); err != nil {
			return
		}
		if got := p.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("round trip:\n in  %x\n out %x", b, got)
		}
	})
}

// FuzzDataHeader: parsing never panics, and the header encodes back to the same bytes.
func FuzzDataHeader(f *testing.F) {
	f.Add([]byte{0x48, 0, 0, 1, 0xaa})
	f.Add([]byte{0x30, 0xaa})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseDataHeader(b)
		if err != nil {
			return
		}
		out := make([]byte, h.Len)
		h.Put(out)
		if !bytes.Equal(out, b[:h.Len]) {
			t.Fatalf("round trip: %x -> %+v -> %x", b[:h.Len], h, out)
		}
	})
}
