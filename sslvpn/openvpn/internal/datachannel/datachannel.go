// Package datachannel encrypts and decrypts OpenVPN data-channel packets in place (crypto.c), with the AEAD
// ciphers (AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305) and the legacy CBC ciphers with HMAC (AES-128-CBC,
// AES-256-CBC with SHA1, SHA256 or SHA512), and anti-replay on the 32-bit packet id.
//
// AEAD packet (the AD is the P_DATA_V2 header and the packet id; for P_DATA_V1 only the packet id):
//
//	[header: 1 or 4] [packet id: 4] [tag: 16] [ciphertext]
//	nonce = packet id || implicit IV (first 8 bytes of the direction's HMAC key slot)
//
// CBC packet (encrypt-then-MAC, the header is not authenticated):
//
//	[header: 1 or 4] [HMAC(IV || ciphertext)] [IV: 16] [AES-CBC(packet id: 4 || payload || PKCS#7 padding)]
//
// Buffers: Encrypt takes the plaintext at buf[off:off+n] and needs Headroom bytes before it and Tailroom bytes
// of capacity after it; the packet is written around it and returned as a sub-slice of buf. Decrypt works within
// the packet (and may use its spare capacity) and returns the plaintext as a sub-slice of it. Nothing allocates
// per packet.
//
// Concurrency: a Keys value has one send side and one receive side with their own state (packet counter, CBC
// chaining, HMAC, replay window). Encrypt may be called by one goroutine at a time and Decrypt by one goroutine at
// a time; the two may run concurrently with each other.
package datachannel

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"toride/sslvpn/internal/replay"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/wire"
)

// Errors. Decrypt failures wrap ErrDecrypt.
var (
	ErrDecrypt     = errors.New("datachannel: cannot decrypt packet")
	ErrShort       = fmt.Errorf("%w: too short", ErrDecrypt)
	ErrAuth        = fmt.Errorf("%w: authentication failed", ErrDecrypt)
	ErrReplay      = fmt.Errorf("%w: replayed or too old packet id", ErrDecrypt)
	ErrPadding     = fmt.Errorf("%w: bad padding", ErrDecrypt)
	ErrRoom        = errors.New("datachannel: buffer lacks headroom or tailroom")
	ErrPIDWrap     = errors.New("datachannel: packet id exhausted, renegotiate")
	ErrUnsupported = errors.New("datachannel: unsupported cipher or digest")
)

const (
	// Headroom is the space Encrypt needs before the plaintext: header, the largest HMAC, IV and packet id.
	Headroom = wire.DataV2HeaderLen + sha512.Size + aes.BlockSize + 4
	// Tailroom is the capacity Encrypt needs after the plaintext: an AEAD tag or CBC padding.
	Tailroom = 16
	tagLen   = 16
	pidLen   = 4
	// PIDLimit is the packet id after which a key must be renegotiated (OpenVPN renegotiates near the wrap).
	PIDLimit = 0xFF000000
	// replayWindow is how far below the highest packet id received a packet is still taken, once: 31 blocks of
	// 64, wide enough for the reordering of a busy UDP path.
	replayWindow = 1984
)

// Cipher describes a data-channel cipher by its OpenVPN name.
type Cipher struct {
	Name   string
	KeyLen int
	AEAD   bool
	// Strength ranks ciphers for negotiation: higher is preferred.
	Strength int
}

var ciphers = []Cipher{
	{Name: "AES-256-GCM", KeyLen: 32, AEAD: true, Strength: 50},
	{Name: "CHACHA20-POLY1305", KeyLen: 32, AEAD: true, Strength: 40},
	{Name: "AES-128-GCM", KeyLen: 16, AEAD: true, Strength: 30},
	{Name: "AES-256-CBC", KeyLen: 32, Strength: 20},
	{Name: "AES-128-CBC", KeyLen: 16, Strength: 10},
}

// Ciphers returns the supported ciphers, strongest first.
func Ciphers() []Cipher { return append([]Cipher(nil), ciphers...) }

// LookupCipher finds a cipher by name, ignoring case ("aes-256-gcm" is AES-256-GCM).
func LookupCipher(name string) (Cipher, bool) {
	for _, c := range ciphers {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Cipher{}, false
}

// Digest describes an HMAC digest for CBC ciphers by its OpenVPN name.
type Digest struct {
	Name string
	Size int
	new  func() hash.Hash
}

var digests = []Digest{
	{Name: "SHA1", Size: sha1.Size, new: sha1.New},
	{Name: "SHA256", Size: sha256.Size, new: sha256.New},
	{Name: "SHA512", Size: sha512.Size, new: sha512.New},
}

// LookupDigest finds a digest by name, ignoring case; "SHA-256" is accepted for SHA256.
func LookupDigest(name string) (Digest, bool) {
	n := strings.ReplaceAll(strings.ToUpper(name), "-", "")
	for _, d := range digests {
		if d.Name == n {
			return d, true
		}
	}
	return Digest{}, false
}

type sealer struct {
	aead     cipher.AEAD
	implicit [8]byte
	nonce    [12]byte // scratch: a local would escape through the AEAD interface

	block  cipher.Block
	cbc    cipher.BlockMode
	setIV  func([]byte)
	mac    hash.Hash
	macLen int
	macBuf [sha512.Size]byte
}

// Keys holds both directions of one data-channel key (one key id).
type Keys struct {
	cipher Cipher
	digest Digest

	send    sealer
	sendPID atomic.Uint32 // written by Encrypt only; atomic so SentPackets may be read from anywhere
	ivGen   cipher.Block  // encrypts the packet counter into unpredictable CBC IVs
	ivBuf   [aes.BlockSize]byte

	recv   sealer
	filter replay.Filter
}

// New returns the keys of one key id from the key block. server selects the directions: the server sends with
// the second half of the block and receives with the first. digest is ignored for AEAD ciphers.
func New(c Cipher, digest Digest, km *keymethod.KeyMaterial, server bool) (*Keys, error) {
	const half = keymethod.KeyMaterialLen / 2
	out, in := km[half:], km[:half]
	if !server {
		out, in = in, out
	}
	k := &Keys{cipher: c, digest: digest, filter: replay.New(replayWindow)}
	var err error
	if k.send, err = newSealer(c, digest, out, true); err != nil {
		return nil, err
	}
	if k.recv, err = newSealer(c, digest, in, false); err != nil {
		return nil, err
	}
	if !c.AEAD {
		var ivKey [16]byte
		if _, err := rand.Read(ivKey[:]); err != nil {
			return nil, err
		}
		k.ivGen, _ = aes.NewCipher(ivKey[:])
	}
	return k, nil
}

// newSealer builds one direction from its {cipher[64], hmac[64]} slot.
func newSealer(c Cipher, d Digest, slot []byte, encrypt bool) (sealer, error) {
	cipherKey, hmacKey := slot[:c.KeyLen], slot[64:128]
	var s sealer
	if c.AEAD {
		var err error
		if c.Name == "CHACHA20-POLY1305" {
			s.aead, err = chacha20poly1305.New(cipherKey)
		} else {
			var b cipher.Block
			if b, err = aes.NewCipher(cipherKey); err == nil {
				s.aead, err = cipher.NewGCM(b)
			}
		}
		if err != nil {
			return s, fmt.Errorf("%w: %s: %v", ErrUnsupported, c.Name, err)
		}
		copy(s.implicit[:], hmacKey)
		return s, nil
	}
	if d.new == nil {
		return s, fmt.Errorf("%w: %s needs an HMAC digest", ErrUnsupported, c.Name)
	}
	b, err := aes.NewCipher(cipherKey)
	if err != nil {
		return s, fmt.Errorf("%w: %s: %v", ErrUnsupported, c.Name, err)
	}
	var zero [aes.BlockSize]byte
	s.block = b
	if encrypt {
		s.cbc = cipher.NewCBCEncrypter(b, zero[:])
	} else {
		s.cbc = cipher.NewCBCDecrypter(b, zero[:])
	}
	if iv, ok := s.cbc.(interface{ SetIV([]byte) }); ok {
		s.setIV = iv.SetIV
	} else {
		// Not reached with the standard library; re-creating the mode per packet is correct, just slower.
		s.setIV = func(iv []byte) {
			if encrypt {
				s.cbc = cipher.NewCBCEncrypter(b, iv)
			} else {
				s.cbc = cipher.NewCBCDecrypter(b, iv)
			}
		}
	}
	s.mac = hmac.New(d.new, hmacKey[:d.Size])
	s.macLen = d.Size
	return s, nil
}

// Cipher is the cipher of these keys.
func (k *Keys) Cipher() Cipher { return k.cipher }

// SentPackets is the last packet id sent: when it passes PIDLimit the key should be renegotiated.
func (k *Keys) SentPackets() uint32 { return k.sendPID.Load() }

// Overhead is the number of bytes a packet grows by on encryption (without padding) for a header of hdrLen.
func (k *Keys) Overhead(hdrLen int) int {
	if k.cipher.AEAD {
		return hdrLen + pidLen + tagLen
	}
	return hdrLen + k.send.macLen + aes.BlockSize + pidLen + aes.BlockSize
}

// Encrypt encrypts the plaintext buf[off:off+n] into a packet with header h and returns the packet, a
// sub-slice of buf starting before off. It needs Headroom bytes before off and Tailroom bytes of capacity after
// off+n.
func (k *Keys) Encrypt(buf []byte, off, n int, h wire.DataHeader) ([]byte, error) {
	if off < Headroom || off+n+Tailroom > cap(buf) || n < 0 {
		return nil, ErrRoom
	}
	pid := k.sendPID.Load()
	if pid == ^uint32(0) {
		return nil, ErrPIDWrap
	}
	pid++
	k.sendPID.Store(pid)
	buf = buf[:cap(buf)]
	if k.cipher.AEAD {
		start := off - tagLen - pidLen - h.Len
		h.Put(buf[start:])
		pidAt := start + h.Len
		binary.BigEndian.PutUint32(buf[pidAt:], pid)
		nonce := k.send.nonce[:]
		copy(nonce[:4], buf[pidAt:pidAt+4])
		copy(nonce[4:], k.send.implicit[:])
		ad := buf[pidAt : pidAt+pidLen]
		if h.Opcode == wire.DataV2 {
			ad = buf[start : pidAt+pidLen]
		}
		// Seal leaves ciphertext||tag in place; OpenVPN puts the tag first, in the gap before off.
		k.send.aead.Seal(buf[off:off], nonce, buf[off:off+n], ad)
		copy(buf[off-tagLen:off], buf[off+n:off+n+tagLen])
		return buf[start : off+n], nil
	}
	// CBC: packet id, payload and padding are encrypted; the IV and HMAC go before them.
	ptStart := off - pidLen
	binary.BigEndian.PutUint32(buf[ptStart:], pid)
	pad := aes.BlockSize - (n+pidLen)%aes.BlockSize
	end := off + n + pad
	for i := off + n; i < end; i++ {
		buf[i] = byte(pad)
	}
	ivAt := ptStart - aes.BlockSize
	// IV = AES_ivkey(counter): unpredictable to anyone without the random ivkey, and never repeated.
	clear(k.ivBuf[:])
	binary.BigEndian.PutUint32(k.ivBuf[12:], pid)
	k.ivGen.Encrypt(buf[ivAt:ptStart], k.ivBuf[:])
	k.send.setIV(buf[ivAt:ptStart])
	k.send.cbc.CryptBlocks(buf[ptStart:end], buf[ptStart:end])
	macAt := ivAt - k.send.macLen
	k.send.mac.Reset()
	k.send.mac.Write(buf[ivAt:end])
	k.send.mac.Sum(buf[macAt:macAt])
	start := macAt - h.Len
	h.Put(buf[start:])
	return buf[start:end], nil
}

// Decrypt authenticates and decrypts the packet pkt whose clear header is hdrLen bytes long, and checks its
// packet id against the replay window. It returns the plaintext, a sub-slice of pkt.
func (k *Keys) Decrypt(pkt []byte, hdrLen int) ([]byte, error) {
	if hdrLen < 0 || len(pkt) < hdrLen {
		return nil, ErrShort
	}
	var pid uint32
	var plain []byte
	if k.cipher.AEAD {
		pidAt := hdrLen
		tagAt := pidAt + pidLen
		ctAt := tagAt + tagLen
		if len(pkt) < ctAt {
			return nil, ErrShort
		}
		nonce := k.recv.nonce[:]
		copy(nonce[:4], pkt[pidAt:tagAt])
		copy(nonce[4:], k.recv.implicit[:])
		ad := pkt[pidAt:tagAt]
		if hdrLen == wire.DataV2HeaderLen {
			ad = pkt[:tagAt]
		}
		n := len(pkt) - ctAt
		var tag [tagLen]byte
		copy(tag[:], pkt[tagAt:ctAt])
		// Open wants ciphertext||tag: move the ciphertext down over the tag and append the tag after it.
		copy(pkt[tagAt:], pkt[ctAt:])
		copy(pkt[tagAt+n:], tag[:])
		var err error
		plain, err = k.recv.aead.Open(pkt[tagAt:tagAt], nonce, pkt[tagAt:tagAt+n+tagLen], ad)
		if err != nil {
			return nil, ErrAuth
		}
		pid = binary.BigEndian.Uint32(pkt[pidAt:])
	} else {
		macAt := hdrLen
		ivAt := macAt + k.recv.macLen
		ctAt := ivAt + aes.BlockSize
		if len(pkt) < ctAt+aes.BlockSize || (len(pkt)-ctAt)%aes.BlockSize != 0 {
			return nil, ErrShort
		}
		k.recv.mac.Reset()
		k.recv.mac.Write(pkt[ivAt:])
		sum := k.recv.mac.Sum(k.recv.macBuf[:0])
		if subtle.ConstantTimeCompare(sum, pkt[macAt:ivAt]) != 1 {
			return nil, ErrAuth
		}
		k.recv.setIV(pkt[ivAt:ctAt])
		ct := pkt[ctAt:]
		k.recv.cbc.CryptBlocks(ct, ct)
		pad := int(ct[len(ct)-1])
		if pad == 0 || pad > aes.BlockSize || pad > len(ct)-pidLen {
			return nil, ErrPadding
		}
		for _, b := range ct[len(ct)-pad:] {
			if int(b) != pad {
				return nil, ErrPadding
			}
		}
		pid = binary.BigEndian.Uint32(ct)
		plain = ct[pidLen : len(ct)-pad]
	}
	if pid == 0 || !k.filter.Accept(uint64(pid)) {
		return nil, ErrReplay
	}
	return plain, nil
}

// PingPayload is the keepalive message (ping.c ping_string): a data packet with this exact payload is a ping,
// not an IP packet.
var PingPayload = [16]byte{0x2a, 0x18, 0x7b, 0xf3, 0x64, 0x1e, 0xb4, 0xcb, 0x07, 0xed, 0x2d, 0x0a, 0x98, 0x1f, 0xc7, 0x48}

// OCCMagic starts an OCC message on the data channel (occ.c occ_magic); the byte after it is the OCC opcode.
var OCCMagic = [16]byte{0x28, 0x7f, 0x34, 0x6b, 0xd4, 0xef, 0x7a, 0x81, 0x2d, 0x56, 0xb8, 0xd3, 0xaf, 0xc5, 0x45, 0x9c}

// OCCExit is the OCC opcode of explicit-exit-notify on the data channel.
const OCCExit = 6

// Kind classifies a decrypted payload.
type Kind int

const (
	// KindIP is an IP packet for the tunnel.
	KindIP Kind = iota
	// KindPing is a keepalive.
	KindPing
	// KindExit is an OCC_EXIT: the peer is going away.
	KindExit
	// KindOCC is another OCC message, ignored.
	KindOCC
)

// Classify tells pings and OCC messages from IP packets. An IP packet never starts with either magic: its
// first nibble is 4 or 6, and both magics start with 0x2.
func Classify(p []byte) Kind {
	if len(p) == len(PingPayload) && [16]byte(p) == PingPayload {
		return KindPing
	}
	if len(p) > len(OCCMagic) && [16]byte(p[:16]) == OCCMagic {
		if p[16] == OCCExit {
			return KindExit
		}
		return KindOCC
	}
	return KindIP
}
