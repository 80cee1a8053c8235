package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestControlPacketRoundTrip(t *testing.T) {
	sid := SessionID{1, 2, 3, 4, 5, 6, 7, 8}
	rsid := SessionID{9, 9, 9, 9, 9, 9, 9, 9}
	for _, tc := range []struct {
		name string
		p    ControlPacket
		want []byte
	}{
		{
			name: "client hard reset, no acks",
			p:    ControlPacket{Opcode: ControlHardResetClientV2, SessionID: sid},
			want: []byte{0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0},
		},
		{
			name: "server hard reset acking 0",
			p:    ControlPacket{Opcode: ControlHardResetServerV2, SessionID: sid, NumAcks: 1, RemoteSessionID: rsid},
			want: []byte{0x40, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0},
		},
		{
			name: "control with payload, key id 5, two acks",
			p: ControlPacket{Opcode: ControlV1, KeyID: 5, SessionID: sid, NumAcks: 2, Acks: [MaxAcks]uint32{7, 0x01020304},
				RemoteSessionID: rsid, MessageID: 0xa0b0c0d0, Payload: []byte("tls")},
			want: append([]byte{0x25, 1, 2, 3, 4, 5, 6, 7, 8, 2, 0, 0, 0, 7, 1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9, 0xa0, 0xb0, 0xc0, 0xd0}, "tls"...),
		},
		{
			name: "ack only",
			p:    ControlPacket{Opcode: AckV1, KeyID: 1, SessionID: sid, NumAcks: 1, Acks: [MaxAcks]uint32{3}, RemoteSessionID: rsid},
			want: []byte{0x29, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 0, 3, 9, 9, 9, 9, 9, 9, 9, 9},
		},
		{
			name: "soft reset",
			p:    ControlPacket{Opcode: ControlSoftResetV1, KeyID: 2, SessionID: sid},
			want: []byte{0x1a, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.Append(nil)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("encode (-got +want):\n-%x\n+%x", got, tc.want)
			}
			if n := ControlHeaderLen + tc.p.BodyLen(); n != len(got) {
				t.Errorf("BodyLen says %d bytes, encoded %d", n, len(got))
			}
			var back ControlPacket
			if err := back.Parse(got); err != nil {
				t.Fatal(err)
			}
			if back.Payload == nil {
				back.Payload = []byte{}
			}
			want := tc.p
			if want.Payload == nil {
				want.Payload = []byte{}
			}
			if diff := cmp.Diff(back, want); diff != "" {
				t.Errorf("decode (-got +want):\n%s", diff)
			}
		})
	}
}

func TestControlPacketErrors(t *testing.T) {
	sid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTooShort},
		{"short session id", []byte{0x38, 1, 2}, ErrTooShort},
		{"data opcode", append([]byte{0x48}, sid...), ErrOpcode},
		{"unknown opcode", append([]byte{0xf8}, sid...), ErrOpcode},
		{"no ack count", append([]byte{0x38}, sid...), ErrTooShort},
		{"too many acks", append(append([]byte{0x20}, sid...), 9), ErrTooMany},
		{"truncated ack", append(append([]byte{0x20}, sid...), 1, 0, 0), ErrTooShort},
		{"missing remote sid", append(append([]byte{0x20}, sid...), 1, 0, 0, 0, 1, 5), ErrTooShort},
		{"missing message id", append(append([]byte{0x20}, sid...), 0, 0, 0), ErrTooShort},
		{"ack with trailing bytes", append(append([]byte{0x28}, sid...), 0, 1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p ControlPacket
			if err := p.Parse(tc.b); !errors.Is(err, tc.want) {
				t.Errorf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDataHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want DataHeader
		err  error
	}{
		{"v1", []byte{0x31, 0xff}, DataHeader{Opcode: DataV1, KeyID: 1, PeerID: NoPeerID, Len: 1}, nil},
		{"v2", []byte{0x4a, 0x12, 0x34, 0x56, 0}, DataHeader{Opcode: DataV2, KeyID: 2, PeerID: 0x123456, Len: 4}, nil},
		{"v2 short", []byte{0x4a, 0x12}, DataHeader{}, ErrTooShort},
		{"control", []byte{0x20}, DataHeader{}, ErrOpcode},
		{"empty", nil, DataHeader{}, ErrTooShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDataHeader(tc.b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if err == nil {
				b := make([]byte, got.Len)
				got.Put(b)
				if !bytes.Equal(b, tc.b[:got.Len]) {
					t.Errorf("Put = %x, want %x", b, tc.b[:got.Len])
				}
			}
		})
	}
	if h := NewDataHeader(9, NoPeerID); h.Opcode != DataV1 || h.KeyID != 1 {
		t.Errorf("NewDataHeader(9, none) = %+v", h)
	}
}

func TestOpcodeNames(t *testing.T) {
	if ControlHardResetClientV2.String() != "P_CONTROL_HARD_RESET_CLIENT_V2" || Opcode(31).String() != "P_UNKNOWN_31" {
		t.Error("opcode names")
	}
	if !AckV1.IsControl() || AckV1.HasMessageID() || DataV2.IsControl() || !ControlSoftResetV1.IsReset() {
		t.Error("opcode classes")
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	p := ControlPacket{Opcode: ControlV1, SessionID: SessionID{1}, NumAcks: 2, RemoteSessionID: SessionID{2}, Payload: make([]byte, 100)}
	b := p.Append(nil)
	data := []byte{0x48, 0, 0, 1, 1, 2, 3}
	var q ControlPacket
	if n := testing.AllocsPerRun(100, func() {
		_ = q.Parse(b)
		_, _ = ParseDataHeader(data)
	}); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}
