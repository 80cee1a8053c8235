// Package cstp is AnyConnect's packet framing: the 8-byte "STF" header of the TLS channel (CSTP) and the 1-byte
// header of the DTLS channel.
//
//	CSTP:  'S' 'T' 'F' 0x01 | payload length (16 bits, big endian) | type | 0x00 | payload
//	DTLS:  type | payload
//
// Both carry the same packet types. A CSTP frame is written as one TLS record: openconnect reads one record per
// frame and drops frames split across records.
//
// Functions here allocate nothing; a FrameReader owns one buffer for the life of a connection. Functions are
// safe for concurrent use; a FrameReader is used by one goroutine.
package cstp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderLen is the length of a CSTP header; DTLSHeaderLen of a DTLS one.
const (
	HeaderLen     = 8
	DTLSHeaderLen = 1
)

// MaxPayload is the largest payload a frame may carry. openconnect reads records of up to 16384 bytes plus the
// header; anything larger is a protocol error, not a packet.
const MaxPayload = 16384

// Type is a packet type.
type Type byte

// Packet types.
const (
	Data       Type = 0x00 // an IP packet
	DPDRequest Type = 0x03 // dead-peer detection request; the peer echoes the payload in a DPD response
	DPDResp    Type = 0x04 // dead-peer detection response
	Disconnect Type = 0x05 // the sender is leaving; payload: one code byte, then a reason in text
	Keepalive  Type = 0x07 // keeps NAT bindings; no answer
	Compressed Type = 0x08 // compressed data (not negotiated by this server)
	Terminate  Type = 0x09 // the server ends the session
)

func (t Type) String() string {
	switch t {
	case Data:
		return "DATA"
	case DPDRequest:
		return "DPD-REQ"
	case DPDResp:
		return "DPD-RESP"
	case Disconnect:
		return "DISCONNECT"
	case Keepalive:
		return "KEEPALIVE"
	case Compressed:
		return "COMPRESSED"
	case Terminate:
		return "TERMINATE"
	}
	return fmt.Sprintf("type-%#02x", byte(t))
}

// DisconnectCode is the code byte openconnect puts before the reason of a DISCONNECT.
const DisconnectCode = 0xb0

// Errors of the framing.
var (
	ErrBadMagic    = errors.New("cstp: bad frame header")
	ErrTooLong     = errors.New("cstp: frame payload too long")
	ErrShortBuffer = errors.New("cstp: buffer too short")
)

// PutHeader writes a CSTP header for a payload of n bytes into b[:HeaderLen].
func PutHeader(b []byte, t Type, n int) error {
	if len(b) < HeaderLen {
		return ErrShortBuffer
	}
	if n < 0 || n > MaxPayload {
		return ErrTooLong
	}
	b[0], b[1], b[2], b[3] = 'S', 'T', 'F', 1
	binary.BigEndian.PutUint16(b[4:6], uint16(n))
	b[6], b[7] = byte(t), 0
	return nil
}

// ParseHeader reads a CSTP header: the type and the payload length that follows it.
func ParseHeader(b []byte) (Type, int, error) {
	if len(b) < HeaderLen {
		return 0, 0, ErrShortBuffer
	}
	if b[0] != 'S' || b[1] != 'T' || b[2] != 'F' || b[3] != 1 || b[7] != 0 {
		return 0, 0, fmt.Errorf("%w: % x", ErrBadMagic, b[:HeaderLen])
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n > MaxPayload {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrTooLong, n)
	}
	return Type(b[6]), n, nil
}

// AppendFrame appends a whole CSTP frame to b: for control frames and tests, not the data path.
func AppendFrame(b []byte, t Type, payload []byte) ([]byte, error) {
	var h [HeaderLen]byte
	if err := PutHeader(h[:], t, len(payload)); err != nil {
		return b, err
	}
	return append(append(b, h[:]...), payload...), nil
}

// ParseDTLS splits a decrypted DTLS record into its type and payload.
func ParseDTLS(b []byte) (Type, []byte, error) {
	if len(b) < DTLSHeaderLen {
		return 0, nil, ErrShortBuffer
	}
	return Type(b[0]), b[1:], nil
}

// FrameReader reads CSTP frames from a byte stream into its own buffer. The payload a ReadFrame returns is valid
// until the next ReadFrame.
type FrameReader struct {
	r   *bufio.Reader
	buf [HeaderLen + MaxPayload]byte
}

// NewFrameReader returns a reader of the frames in r. r may hold bytes already buffered (the HTTP CONNECT
// request was read through it).
func NewFrameReader(r *bufio.Reader) *FrameReader { return &FrameReader{r: r} }

// ReadFrame reads the next frame. io.EOF means the stream ended between frames; io.ErrUnexpectedEOF within one.
func (f *FrameReader) ReadFrame() (Type, []byte, error) {
	if _, err := io.ReadFull(f.r, f.buf[:HeaderLen]); err != nil {
		return 0, nil, err
	}
	t, n, err := ParseHeader(f.buf[:HeaderLen])
	if err != nil {
		return 0, nil, err
	}
	p := f.buf[HeaderLen : HeaderLen+n]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, p, nil
}

// Buffered reports whether a whole frame is buffered, which ReadFrame would return without reading the stream.
// A malformed header counts as buffered: ReadFrame reports it at once.
func (f *FrameReader) Buffered() bool {
	if f.r.Buffered() < HeaderLen {
		return false
	}
	h, _ := f.r.Peek(HeaderLen)
	_, n, err := ParseHeader(h)
	return err != nil || f.r.Buffered() >= HeaderLen+n
}
