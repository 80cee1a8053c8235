// Package wire encodes and decodes the OpenVPN packet formats: the one-byte opcode/key-id header, control-channel
// packets (session ids, ack arrays, message packet ids) and the data-channel header (P_DATA_V1, P_DATA_V2 with
// peer-id).
//
// Layout of a control packet without tls-crypt (ssl_pkt.c, reliable.c):
//
//	[opcode<<3 | key-id] [own session id: 8] [ack count: 1] [acked message ids: 4 each]
//	[remote session id: 8, only when ack count > 0] [message id: 4, absent in P_ACK_V1] [payload]
//
// With tls-crypt the part from the ack count on is encrypted (see package tlscrypt), so decoding is split into the
// clear header (ParseControlHeader) and the body (ControlPacket.ParseBody).
//
// Parsers allocate nothing: decoded payloads alias the input. All functions are safe for concurrent use; a
// ControlPacket is a plain value owned by its user.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors returned by the parsers. Every parse error wraps ErrMalformed.
var (
	ErrMalformed = errors.New("wire: malformed packet")
	ErrTooShort  = fmt.Errorf("%w: too short", ErrMalformed)
	ErrOpcode    = fmt.Errorf("%w: unknown opcode", ErrMalformed)
	ErrTooMany   = fmt.Errorf("%w: too many acks", ErrMalformed)
)

// Opcode is the packet type in the high five bits of an OpenVPN packet's first byte.
type Opcode uint8

// The opcodes of OpenVPN 2.x (ssl_pkt.h).
const (
	ControlHardResetClientV1 Opcode = 1
	ControlHardResetServerV1 Opcode = 2
	ControlSoftResetV1       Opcode = 3
	ControlV1                Opcode = 4
	AckV1                    Opcode = 5
	DataV1                   Opcode = 6
	ControlHardResetClientV2 Opcode = 7
	ControlHardResetServerV2 Opcode = 8
	DataV2                   Opcode = 9
	ControlHardResetClientV3 Opcode = 10
	ControlWKCV1             Opcode = 11
)

const (
	// SessionIDLen is the length of a control-channel session id.
	SessionIDLen = 8
	// MaxAcks is the largest ack array a peer may send (RELIABLE_ACK_SIZE).
	MaxAcks = 8
	// SendAcksMax is the number of acks we put in one packet (CONTROL_SEND_ACK_MAX): some peers drop more.
	SendAcksMax = 4
	// DataV1HeaderLen and DataV2HeaderLen are the clear header lengths of data packets.
	DataV1HeaderLen = 1
	DataV2HeaderLen = 4
	// NoPeerID is the peer-id value meaning "none" (MAX_PEER_ID).
	NoPeerID = 0xFFFFFF
	// KeyIDMask masks the key id in the first byte.
	KeyIDMask = 0x07
)

var opcodeNames = [...]string{
	ControlHardResetClientV1: "P_CONTROL_HARD_RESET_CLIENT_V1",
	ControlHardResetServerV1: "P_CONTROL_HARD_RESET_SERVER_V1",
	ControlSoftResetV1:       "P_CONTROL_SOFT_RESET_V1",
	ControlV1:                "P_CONTROL_V1",
	AckV1:                    "P_ACK_V1",
	DataV1:                   "P_DATA_V1",
	ControlHardResetClientV2: "P_CONTROL_HARD_RESET_CLIENT_V2",
	ControlHardResetServerV2: "P_CONTROL_HARD_RESET_SERVER_V2",
	DataV2:                   "P_DATA_V2",
	ControlHardResetClientV3: "P_CONTROL_HARD_RESET_CLIENT_V3",
	ControlWKCV1:             "P_CONTROL_WKC_V1",
}

// String returns the name OpenVPN uses for the opcode.
func (o Opcode) String() string {
	if int(o) < len(opcodeNames) && opcodeNames[o] != "" {
		return opcodeNames[o]
	}
	return fmt.Sprintf("P_UNKNOWN_%d", uint8(o))
}

// Valid reports whether o is a known opcode.
func (o Opcode) Valid() bool { return int(o) < len(opcodeNames) && opcodeNames[o] != "" }

// IsData reports whether o is a data-channel opcode.
func (o Opcode) IsData() bool { return o == DataV1 || o == DataV2 }

// IsControl reports whether o is a known control-channel opcode (including P_ACK_V1).
func (o Opcode) IsControl() bool { return o.Valid() && !o.IsData() }

// HasMessageID reports whether packets with opcode o carry a reliable message id (all control opcodes but
// P_ACK_V1).
func (o Opcode) HasMessageID() bool { return o.IsControl() && o != AckV1 }

// IsReset reports whether o starts a key exchange (hard or soft reset).
func (o Opcode) IsReset() bool {
	switch o {
	case ControlHardResetClientV1, ControlHardResetServerV1, ControlSoftResetV1,
		ControlHardResetClientV2, ControlHardResetServerV2, ControlHardResetClientV3:
		return true
	}
	return false
}

// Header returns the first byte of a packet.
func Header(op Opcode, keyID uint8) byte { return byte(op)<<3 | keyID&KeyIDMask }

// SplitHeader splits the first byte of a packet.
func SplitHeader(b byte) (Opcode, uint8) { return Opcode(b >> 3), b & KeyIDMask }

// SessionID identifies one end of a control channel.
type SessionID [SessionIDLen]byte

// IsZero reports whether the id is all zeros (undefined, in OpenVPN's terms).
func (s SessionID) IsZero() bool { return s == SessionID{} }

// String formats the id in hex, as OpenVPN logs it.
func (s SessionID) String() string { return fmt.Sprintf("%x", s[:]) }

// ControlHeaderLen is the length of the clear part every control packet starts with: header byte and session id.
const ControlHeaderLen = 1 + SessionIDLen

// ParseControlHeader decodes the clear start of a control packet and returns the rest.
func ParseControlHeader(b []byte) (op Opcode, keyID uint8, sid SessionID, rest []byte, err error) {
	if len(b) < ControlHeaderLen {
		return 0, 0, sid, nil, ErrTooShort
	}
	op, keyID = SplitHeader(b[0])
	if !op.IsControl() {
		return 0, 0, sid, nil, fmt.Errorf("%w %d", ErrOpcode, uint8(op))
	}
	copy(sid[:], b[1:ControlHeaderLen])
	return op, keyID, sid, b[ControlHeaderLen:], nil
}

// ControlPacket is one decoded control-channel packet. Its zero value is an empty packet; Payload aliases the
// buffer it was decoded from.
type ControlPacket struct {
	Opcode          Opcode
	KeyID           uint8
	SessionID       SessionID
	NumAcks         int
	Acks            [MaxAcks]uint32
	RemoteSessionID SessionID // meaningful only when NumAcks > 0
	MessageID       uint32    // meaningful only when Opcode.HasMessageID()
	Payload         []byte
}

// AckList returns the acked message ids.
func (p *ControlPacket) AckList() []uint32 { return p.Acks[:p.NumAcks] }

// Parse decodes a whole control packet without tls-auth or tls-crypt.
func (p *ControlPacket) Parse(b []byte) error {
	op, keyID, sid, rest, err := ParseControlHeader(b)
	if err != nil {
		return err
	}
	p.Opcode, p.KeyID, p.SessionID = op, keyID, sid
	return p.ParseBody(rest)
}

// ParseBody decodes the part after the clear header: acks, message id and payload. p.Opcode must be set.
func (p *ControlPacket) ParseBody(b []byte) error {
	if len(b) < 1 {
		return ErrTooShort
	}
	n := int(b[0])
	b = b[1:]
	if n > MaxAcks {
		return ErrTooMany
	}
	if len(b) < 4*n {
		return ErrTooShort
	}
	for i := 0; i < n; i++ {
		p.Acks[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	p.NumAcks = n
	b = b[4*n:]
	p.RemoteSessionID = SessionID{}
	if n > 0 {
		if len(b) < SessionIDLen {
			return ErrTooShort
		}
		copy(p.RemoteSessionID[:], b)
		b = b[SessionIDLen:]
	}
	p.MessageID = 0
	if p.Opcode.HasMessageID() {
		if len(b) < 4 {
			return ErrTooShort
		}
		p.MessageID = binary.BigEndian.Uint32(b)
		b = b[4:]
	} else if len(b) != 0 {
		// P_ACK_V1 carries nothing after its acks.
		return fmt.Errorf("%w: %d trailing bytes after ack", ErrMalformed, len(b))
	}
	p.Payload = b
	return nil
}

// BodyLen is the encoded length of the body (what AppendBody appends).
func (p *ControlPacket) BodyLen() int {
	n := 1 + 4*p.NumAcks + len(p.Payload)
	if p.NumAcks > 0 {
		n += SessionIDLen
	}
	if p.Opcode.HasMessageID() {
		n += 4
	}
	return n
}

// AppendHeader appends the clear header: opcode/key id and session id.
func (p *ControlPacket) AppendHeader(dst []byte) []byte {
	dst = append(dst, Header(p.Opcode, p.KeyID))
	return append(dst, p.SessionID[:]...)
}

// AppendBody appends acks, message id and payload.
func (p *ControlPacket) AppendBody(dst []byte) []byte {
	dst = append(dst, byte(p.NumAcks))
	for _, a := range p.Acks[:p.NumAcks] {
		dst = binary.BigEndian.AppendUint32(dst, a)
	}
	if p.NumAcks > 0 {
		dst = append(dst, p.RemoteSessionID[:]...)
	}
	if p.Opcode.HasMessageID() {
		dst = binary.BigEndian.AppendUint32(dst, p.MessageID)
	}
	return append(dst, p.Payload...)
}

// Append appends the whole packet in its plain (no tls-crypt) form.
func (p *ControlPacket) Append(dst []byte) []byte { return p.AppendBody(p.AppendHeader(dst)) }

// DataHeader is the clear header of a data-channel packet.
type DataHeader struct {
	Opcode Opcode
	KeyID  uint8
	PeerID uint32 // NoPeerID for P_DATA_V1
	Len    int    // header length: DataV1HeaderLen or DataV2HeaderLen
}

// ParseDataHeader decodes the header of a data packet.
func ParseDataHeader(b []byte) (DataHeader, error) {
	if len(b) < 1 {
		return DataHeader{}, ErrTooShort
	}
	op, keyID := SplitHeader(b[0])
	switch op {
	case DataV1:
		return DataHeader{Opcode: op, KeyID: keyID, PeerID: NoPeerID, Len: DataV1HeaderLen}, nil
	case DataV2:
		if len(b) < DataV2HeaderLen {
			return DataHeader{}, ErrTooShort
		}
		peer := uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		return DataHeader{Opcode: op, KeyID: keyID, PeerID: peer, Len: DataV2HeaderLen}, nil
	}
	return DataHeader{}, fmt.Errorf("%w %d (not data)", ErrOpcode, uint8(op))
}

// Put writes h into b, which must hold h.Len bytes.
func (h DataHeader) Put(b []byte) {
	b[0] = Header(h.Opcode, h.KeyID)
	if h.Opcode == DataV2 {
		b[1], b[2], b[3] = byte(h.PeerID>>16), byte(h.PeerID>>8), byte(h.PeerID)
	}
}

// NewDataHeader returns the header for a data packet: P_DATA_V2 when peerID is not NoPeerID.
func NewDataHeader(keyID uint8, peerID uint32) DataHeader {
	if peerID == NoPeerID {
		return DataHeader{Opcode: DataV1, KeyID: keyID & KeyIDMask, PeerID: NoPeerID, Len: DataV1HeaderLen}
	}
	return DataHeader{Opcode: DataV2, KeyID: keyID & KeyIDMask, PeerID: peerID & 0xFFFFFF, Len: DataV2HeaderLen}
}
