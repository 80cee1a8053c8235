// Package tlscrypt implements OpenVPN's tls-crypt (v1) wrapping of control-channel packets (tls_crypt.c):
// every control packet is authenticated with HMAC-SHA256 and encrypted with AES-256-CTR under a pre-shared
// 2048-bit static key, so a server answers nobody who lacks the key.
//
// Wrapped packet layout:
//
//	[opcode|key-id] [session id: 8] [packet id: 4] [net time: 4] [tag: 32] [AES-256-CTR(ack array, message id, payload)]
//
// The tag is HMAC-SHA256 over everything before it plus the plaintext; its first 16 bytes are the CTR IV. The
// packet id and time are tls-crypt's own replay counter, separate from the reliable message ids.
//
// Key directions: the static key holds two {cipher[64], hmac[64]} halves; the server sends with the first and the
// client with the second (tls_crypt_init_key uses KEY_DIRECTION_NORMAL for the server).
//
// A Context is not safe for concurrent use. Key is a plain value.
package tlscrypt

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"

	"toride/sslvpn/internal/replay"
	"toride/sslvpn/openvpn/internal/wire"
)

// Errors. Unwrap failures wrap ErrUnwrap.
var (
	ErrKeyFile = errors.New("tlscrypt: bad static key file")
	ErrUnwrap  = errors.New("tlscrypt: cannot unwrap packet")
	ErrAuth    = fmt.Errorf("%w: authentication failed", ErrUnwrap)
	ErrReplay  = fmt.Errorf("%w: replayed packet", ErrUnwrap)
	ErrShort   = fmt.Errorf("%w: too short", ErrUnwrap)
	ErrPID     = errors.New("tlscrypt: packet id exhausted")
)

const (
	// KeyLen is the size of an OpenVPN static key.
	KeyLen = 256
	// TagLen is the HMAC-SHA256 tag length.
	TagLen = 32
	// PIDLen is the length of the long-form packet id (id and time).
	PIDLen = 8
	// Overhead is what wrapping adds to a plain control packet.
	Overhead = PIDLen + TagLen
	offPID   = wire.ControlHeaderLen
	offTag   = offPID + PIDLen
	offCT    = offTag + TagLen
	// replayWindow is how far below the highest packet id received a control packet is still taken, once.
	replayWindow = 1984

	beginMarker = "-----BEGIN OpenVPN Static key V1-----"
	endMarker   = "-----END OpenVPN Static key V1-----"
)

// Key is an OpenVPN static key: two directions of {cipher key[64], hmac key[64]}.
type Key [KeyLen]byte

// ParseKey reads a static key file ("-----BEGIN OpenVPN Static key V1-----", 256 bytes in hex). Comment lines
// starting with '#' or ';' are ignored.
func ParseKey(text []byte) (*Key, error) {
	var hexText strings.Builder
	state := 0 // 0 before BEGIN, 1 inside, 2 after END
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == beginMarker:
			if state != 0 {
				return nil, fmt.Errorf("%w: second BEGIN line", ErrKeyFile)
			}
			state = 1
		case line == endMarker:
			if state != 1 {
				return nil, fmt.Errorf("%w: END without BEGIN", ErrKeyFile)
			}
			state = 2
		case state == 1:
			hexText.WriteString(line)
		}
	}
	if state != 2 {
		return nil, fmt.Errorf("%w: missing %q/%q lines", ErrKeyFile, beginMarker, endMarker)
	}
	raw, err := hex.DecodeString(hexText.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if len(raw) != KeyLen {
		return nil, fmt.Errorf("%w: %d bytes of key, want %d", ErrKeyFile, len(raw), KeyLen)
	}
	var k Key
	copy(k[:], raw)
	return &k, nil
}

// Marshal formats the key as OpenVPN writes static key files.
func (k *Key) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("#\n# 2048 bit OpenVPN static key\n#\n" + beginMarker + "\n")
	for i := 0; i < KeyLen; i += 16 {
		b.WriteString(hex.EncodeToString(k[i : i+16]))
		b.WriteByte('\n')
	}
	b.WriteString(endMarker + "\n")
	return b.Bytes()
}

type direction struct {
	block cipher.Block
	mac   hash.Hash
}

func newDirection(half []byte) direction {
	block, err := aes.NewCipher(half[:32])
	if err != nil {
		panic(err) // 32-byte key: cannot fail
	}
	return direction{block: block, mac: hmac.New(sha256.New, half[64:64+32])}
}

// Context wraps and unwraps the control packets of one session.
type Context struct {
	out, in direction
	sendPID uint32
	filter  replay.Filter
	tag     [TagLen]byte
}

// New returns a context for the server (server=true) or client end of a session.
func New(k *Key, server bool) *Context {
	first, second := k[:128], k[128:]
	c := &Context{filter: replay.New(replayWindow)}
	if server {
		c.out, c.in = newDirection(first), newDirection(second)
	} else {
		c.out, c.in = newDirection(second), newDirection(first)
	}
	return c
}

// Wrap appends to dst the wrapped packet with clear header hdr (opcode byte and session id,
// wire.ControlHeaderLen bytes) and body plain (the plain packet from the ack count on).
func (c *Context) Wrap(dst, hdr, plain []byte, now time.Time) ([]byte, error) {
	if len(hdr) != wire.ControlHeaderLen {
		return dst, fmt.Errorf("tlscrypt: header is %d bytes, want %d", len(hdr), wire.ControlHeaderLen)
	}
	if c.sendPID == ^uint32(0) {
		return dst, ErrPID
	}
	c.sendPID++
	start := len(dst)
	dst = append(dst, hdr...)
	dst = binary.BigEndian.AppendUint32(dst, c.sendPID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(now.Unix()))
	c.out.mac.Reset()
	c.out.mac.Write(dst[start:])
	c.out.mac.Write(plain)
	tag := c.out.mac.Sum(c.tag[:0])
	dst = append(dst, tag...)
	ctStart := len(dst)
	dst = append(dst, plain...)
	cipher.NewCTR(c.out.block, tag[:16]).XORKeyStream(dst[ctStart:], dst[ctStart:])
	return dst, nil
}

// SetSendPacketID makes id the last packet id sent: the next Wrap uses id+1. A server that answered a client's
// first packet statelessly with packet id 1 continues the session at 2, as the client's replay window expects.
func (c *Context) SetSendPacketID(id uint32) { c.sendPID = id }

// PacketID returns a wrapped packet's clear packet id and the time it carries (the sender's clock when its
// session began, in whole seconds). Trust them only after Open succeeded.
func PacketID(pkt []byte) (id uint32, sent time.Time, err error) {
	if len(pkt) < offCT {
		return 0, time.Time{}, ErrShort
	}
	return binary.BigEndian.Uint32(pkt[offPID:]), time.Unix(int64(binary.BigEndian.Uint32(pkt[offPID+4:])), 0), nil
}

// Open authenticates and decrypts a wrapped packet, appending the plain body (ack count onwards) to dst. It
// does not check for replay; Unwrap does. pid is the packet's tls-crypt packet id.
func (c *Context) Open(dst, pkt []byte) (plain []byte, pid uint32, err error) {
	if len(pkt) < offCT {
		return dst, 0, ErrShort
	}
	start := len(dst)
	dst = append(dst, pkt[offCT:]...)
	tag := pkt[offTag:offCT]
	cipher.NewCTR(c.in.block, tag[:16]).XORKeyStream(dst[start:], dst[start:])
	c.in.mac.Reset()
	c.in.mac.Write(pkt[:offTag])
	c.in.mac.Write(dst[start:])
	if !hmac.Equal(c.in.mac.Sum(c.tag[:0]), tag) {
		return dst[:start], 0, ErrAuth
	}
	return dst, binary.BigEndian.Uint32(pkt[offPID:]), nil
}

// Unwrap is Open followed by the replay check.
func (c *Context) Unwrap(dst, pkt []byte) ([]byte, error) {
	start := len(dst)
	out, pid, err := c.Open(dst, pkt)
	if err != nil {
		return out, err
	}
	if pid == 0 || !c.filter.Accept(uint64(pid)) {
		return out[:start], ErrReplay
	}
	return out, nil
}
