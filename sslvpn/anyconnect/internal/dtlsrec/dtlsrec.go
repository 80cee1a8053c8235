// Package dtlsrec protects DTLS 1.2 application-data records of an established connection, without the
// handshake library on the packet path: pion/dtls negotiates the connection, then data records are sealed and
// opened here, in place, without allocating. Supported: TLS_PSK_WITH_AES_128_GCM_SHA256 and
// TLS_PSK_WITH_AES_256_GCM_SHA384 (RFC 5487, 5288), TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 (RFC 7905); other
// suites stay on the library's path.
//
//	record:  type(1)=23 | version(2)=fe fd | epoch(2) | sequence(6) | length(2) | fragment
//	AES-GCM fragment:  explicit nonce(8) = epoch|sequence | ciphertext | tag(16); nonce = salt(4) | explicit
//	ChaCha20 fragment: ciphertext | tag(16); nonce = IV(12) XOR (0(4) | epoch|sequence)
//	additional data:   epoch|sequence(8) | type(1) | version(2) | plaintext length(2)
//
// Keys come from the master secret as TLS 1.2 defines (the suite's PRF hash, "key expansion", server random
// then client random). Incoming records pass the anti-replay window both protocols share (sslvpn/internal/replay),
// sized as RFC 6347 4.1.2.6 suggests: the highest sequence number seen and the 63 below it (ReplayWindow).
//
// A Conn's Seal is safe for concurrent use (it serializes on a mutex: the sequence number and its scratch
// space); Open and the replay window belong to one goroutine (the socket reader). Neither allocates: the AEAD
// nonce and additional data live in the Conn, not on the stack, because passing them through the cipher.AEAD
// interface would move them to the heap on every record.
package dtlsrec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"toride/sslvpn/internal/replay"
)

// Cipher suites handled here.
const (
	TLS_PSK_WITH_AES_128_GCM_SHA256       uint16 = 0x00a8
	TLS_PSK_WITH_AES_256_GCM_SHA384       uint16 = 0x00a9
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 uint16 = 0xccab
)

// Record layout.
const (
	HeaderLen     = 13
	TagLen        = 16
	ExplicitNonce = 8 // AES-GCM only
	// Overhead is the most a record adds around a plaintext: header, explicit nonce and tag.
	Overhead = HeaderLen + ExplicitNonce + TagLen
	// Headroom is what Seal needs in front of the plaintext in its buffer.
	Headroom = HeaderLen + ExplicitNonce

	contentApplicationData = 23

	// ReplayWindow is how far below the highest sequence number received a record is still taken, once: the
	// 64-record window of RFC 6347 4.1.2.6, the highest and the 63 below it.
	ReplayWindow = 63
)

// Errors of Open.
var (
	ErrNotApplicationData = errors.New("dtlsrec: not an application-data record of the current epoch")
	ErrMalformed          = errors.New("dtlsrec: malformed record")
	ErrAuth               = errors.New("dtlsrec: record authentication failed")
	ErrReplay             = errors.New("dtlsrec: replayed or too old record")
	ErrSequence           = errors.New("dtlsrec: sequence numbers exhausted")
	ErrSuite              = errors.New("dtlsrec: unsupported cipher suite")
)

// Conn is one direction pair of an established connection, as the server (isServer) or the client.
type Conn struct {
	suite      uint16
	epoch      uint16
	seal, open cipher.AEAD
	sealIV     [12]byte
	openIV     [12]byte
	explicit   bool // AES-GCM carries an explicit nonce

	sealMu  sync.Mutex
	seq     uint64 // next outgoing sequence number (48 bits); guarded by sealMu
	sealAD  [13]byte
	sealNon [12]byte
	openAD  [13]byte
	openNon [12]byte

	filter replay.Filter // the received sequence numbers
}

// Params are what the handshake agreed.
type Params struct {
	Suite                      uint16
	MasterSecret               []byte // 48 bytes
	ClientRandom, ServerRandom [32]byte
	IsServer                   bool
	Epoch                      uint16 // the epoch of application data (1 after the first handshake)
	NextSeq                    uint64 // the first sequence number Seal uses
}

// New derives the record keys.
func New(p Params) (*Conn, error) {
	var keyLen, ivLen int
	prfHash := sha256.New
	switch p.Suite {
	case TLS_PSK_WITH_AES_128_GCM_SHA256:
		keyLen, ivLen = 16, 4
	case TLS_PSK_WITH_AES_256_GCM_SHA384:
		keyLen, ivLen, prfHash = 32, 4, sha512.New384
	case TLS_PSK_WITH_CHACHA20_POLY1305_SHA256:
		keyLen, ivLen = 32, 12
	default:
		return nil, fmt.Errorf("%w: %#04x", ErrSuite, p.Suite)
	}
	if len(p.MasterSecret) != 48 {
		return nil, fmt.Errorf("%w: master secret of %d bytes", ErrMalformed, len(p.MasterSecret))
	}
	seed := make([]byte, 0, 64)
	seed = append(append(seed, p.ServerRandom[:]...), p.ClientRandom[:]...)
	kb := prf(prfHash, p.MasterSecret, "key expansion", seed, 2*keyLen+2*ivLen)
	clientKey, serverKey := kb[:keyLen], kb[keyLen:2*keyLen]
	clientIV, serverIV := kb[2*keyLen:2*keyLen+ivLen], kb[2*keyLen+ivLen:]
	sealKey, openKey, sealIV, openIV := clientKey, serverKey, clientIV, serverIV
	if p.IsServer {
		sealKey, openKey, sealIV, openIV = serverKey, clientKey, serverIV, clientIV
	}
	c := &Conn{suite: p.Suite, epoch: p.Epoch, explicit: p.Suite != TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, filter: replay.New(ReplayWindow)}
	var err error
	if c.seal, err = newAEAD(p.Suite, sealKey); err != nil {
		return nil, err
	}
	if c.open, err = newAEAD(p.Suite, openKey); err != nil {
		return nil, err
	}
	copy(c.sealIV[:], sealIV)
	copy(c.openIV[:], openIV)
	c.seq = p.NextSeq
	return c, nil
}

func newAEAD(suite uint16, key []byte) (cipher.AEAD, error) {
	if suite == TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 {
		return chacha20poly1305.New(key)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// prf is TLS 1.2's PRF, P_hash with the suite's hash (RFC 5246 §5).
func prf(hf func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	ls := append([]byte(label), seed...)
	out := make([]byte, 0, n+sha512.Size)
	h := hmac.New(hf, secret)
	h.Write(ls)
	a := h.Sum(nil)
	for len(out) < n {
		h.Reset()
		h.Write(a)
		h.Write(ls)
		out = h.Sum(out)
		h.Reset()
		h.Write(a)
		a = h.Sum(a[:0])
	}
	return out[:n]
}

// Epoch is the epoch of the records this Conn seals and opens.
func (c *Conn) Epoch() uint16 { return c.epoch }

// Suite is the cipher suite.
func (c *Conn) Suite() uint16 { return c.suite }

// nonce builds the AEAD nonce for seq (epoch|sequence).
func (c *Conn) nonce(iv *[12]byte, seq64 uint64, out *[12]byte) []byte {
	if c.explicit {
		copy(out[:4], iv[:4])
		binary.BigEndian.PutUint64(out[4:], seq64)
		return out[:12]
	}
	*out = *iv
	for i := range 8 {
		out[4+i] ^= byte(seq64 >> (56 - 8*i))
	}
	return out[:12]
}

// Seal protects the plaintext at buf[Headroom:Headroom+n] in place and returns the record: for AES-GCM it
// starts at buf[0] (header, explicit nonce), for ChaCha20 at buf[ExplicitNonce] (no explicit nonce). buf must
// have TagLen bytes of room after the plaintext.
func (c *Conn) Seal(buf []byte, n int) ([]byte, error) {
	if n < 0 || len(buf) < Headroom+n+TagLen {
		return nil, fmt.Errorf("%w: buffer too short", ErrMalformed)
	}
	c.sealMu.Lock()
	defer c.sealMu.Unlock()
	seq := c.seq
	if seq >= 1<<48 {
		return nil, ErrSequence
	}
	c.seq++
	seq64 := uint64(c.epoch)<<48 | seq
	at, fragLen := ExplicitNonce, n+TagLen
	if c.explicit {
		at, fragLen = 0, ExplicitNonce+n+TagLen
		binary.BigEndian.PutUint64(buf[HeaderLen:Headroom], seq64)
	}
	hdr := buf[at : at+HeaderLen]
	hdr[0], hdr[1], hdr[2] = contentApplicationData, 0xfe, 0xfd
	binary.BigEndian.PutUint64(hdr[3:11], seq64)
	binary.BigEndian.PutUint16(hdr[11:13], uint16(fragLen))
	ad := &c.sealAD
	binary.BigEndian.PutUint64(ad[0:8], seq64)
	ad[8], ad[9], ad[10] = contentApplicationData, 0xfe, 0xfd
	binary.BigEndian.PutUint16(ad[11:13], uint16(n))
	nonce := c.nonce(&c.sealIV, seq64, &c.sealNon)
	pt := buf[Headroom : Headroom+n]
	c.seal.Seal(pt[:0], nonce, pt, ad[:])
	return buf[at : Headroom+n+TagLen], nil
}

// RecordLen returns the length of the record at the start of b (header included), or an error.
func RecordLen(b []byte) (int, error) {
	if len(b) < HeaderLen {
		return 0, ErrMalformed
	}
	n := HeaderLen + int(binary.BigEndian.Uint16(b[11:13]))
	if n > len(b) {
		return 0, ErrMalformed
	}
	return n, nil
}

// IsApplicationData reports whether the record at the start of b is application data of epoch.
func IsApplicationData(b []byte, epoch uint16) bool {
	return len(b) >= HeaderLen && b[0] == contentApplicationData && b[1] == 0xfe && b[2] == 0xfd &&
		binary.BigEndian.Uint16(b[3:5]) == epoch
}

// Open authenticates and decrypts one record (exactly, as RecordLen delimits it) in place and returns its
// plaintext, which aliases rec. A replayed or too old record is refused; the window moves only for records
// that authenticate.
func (c *Conn) Open(rec []byte) ([]byte, error) {
	if !IsApplicationData(rec, c.epoch) {
		return nil, ErrNotApplicationData
	}
	if len(rec) < HeaderLen+TagLen || HeaderLen+int(binary.BigEndian.Uint16(rec[11:13])) != len(rec) {
		return nil, ErrMalformed
	}
	seq64 := binary.BigEndian.Uint64(rec[3:11])
	seq := seq64 & (1<<48 - 1)
	if !c.filter.Fresh(seq) {
		return nil, ErrReplay
	}
	frag := rec[HeaderLen:]
	var nonce []byte
	if c.explicit {
		if len(frag) < ExplicitNonce+TagLen {
			return nil, ErrMalformed
		}
		copy(c.openNon[:4], c.openIV[:4])
		copy(c.openNon[4:], frag[:ExplicitNonce])
		nonce = c.openNon[:]
		frag = frag[ExplicitNonce:]
	} else {
		nonce = c.nonce(&c.openIV, seq64, &c.openNon)
	}
	n := len(frag) - TagLen
	ad := &c.openAD
	binary.BigEndian.PutUint64(ad[0:8], seq64)
	ad[8], ad[9], ad[10] = contentApplicationData, 0xfe, 0xfd
	binary.BigEndian.PutUint16(ad[11:13], uint16(n))
	pt, err := c.open.Open(frag[:0], nonce, frag, ad[:])
	if err != nil {
		return nil, ErrAuth
	}
	c.filter.Accept(seq)
	return pt, nil
}
