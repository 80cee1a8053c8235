// Package keymethod encodes and decodes OpenVPN's key-method 2 messages, the first plaintext both ends send
// through the control channel's TLS session (ssl.c key_method_2_write/read), and derives the data-channel key
// material from them: with the legacy TLS 1.0 PRF over the exchanged randoms, or with the TLS exporter
// ("tls-ekm").
//
// Message layout (all integers big-endian):
//
//	uint32 0 | uint8 key method (2) | [client only: pre-master 48] | random1 32 | random2 32 |
//	string options | string username | string password | string peer-info (optional)
//
// where a string is a uint16 length counting a terminating NUL, then the bytes and the NUL; length 0 is the
// empty string.
//
// Everything here is a pure function or a plain value, safe for concurrent use.
package keymethod

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Errors. Parse errors wrap ErrMalformed.
var (
	ErrMalformed = errors.New("keymethod: malformed key-method 2 message")
	ErrMethod    = fmt.Errorf("%w: unsupported key method", ErrMalformed)
	ErrTooLong   = fmt.Errorf("%w: string too long", ErrMalformed)
)

const (
	// Method2 is the only key method OpenVPN 2.4+ speaks.
	Method2      = 2
	methodMask   = 0x0F
	PreMasterLen = 48
	RandomLen    = 32
	// KeyMaterialLen is the size of the data-channel key block: two directions of {cipher[64], hmac[64]}.
	KeyMaterialLen = 256
	// EKMLabel is the TLS exporter label for data-channel keys (tls-ekm).
	EKMLabel = "EXPORTER-OpenVPN-datakeys"

	// Limits on what we accept; OpenVPN's own are smaller (TLS_OPTIONS_LEN 512, USER_PASS_LEN 128 or 4096).
	MaxOptionsLen  = 2048
	MaxUserPassLen = 4096
	MaxPeerInfoLen = 8192
	// MaxMessageLen bounds a whole message.
	MaxMessageLen = 5 + PreMasterLen + 2*RandomLen + 4*2 + MaxOptionsLen + 2*MaxUserPassLen + MaxPeerInfoLen
)

// Message is a decoded key-method 2 message. For a server's message PreMaster is absent (zero) and IsClient is
// false.
type Message struct {
	IsClient  bool
	PreMaster [PreMasterLen]byte
	Random1   [RandomLen]byte
	Random2   [RandomLen]byte
	Options   string
	Username  string
	Password  string
	PeerInfo  string
	// HasPeerInfo tells an absent peer-info string (old peers) from an empty one.
	HasPeerInfo bool
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str(max int) string {
	l := r.take(2)
	if l == nil {
		return ""
	}
	n := int(binary.BigEndian.Uint16(l))
	if n > max {
		r.err = fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLong, n, max)
		return ""
	}
	v := r.take(n)
	if n == 0 || v == nil {
		return ""
	}
	// The last byte is the NUL OpenVPN writes; a NUL earlier ends the string as it would in C.
	v = v[:n-1]
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return string(v)
}

// Parse decodes a key-method 2 message. client says which end sent it (the client's carries the pre-master).
func Parse(b []byte, client bool) (*Message, error) {
	if len(b) > MaxMessageLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(b))
	}
	r := &reader{b: b}
	r.take(4) // a literal zero, ignored as OpenVPN does
	m := r.take(1)
	if r.err != nil {
		return nil, r.err
	}
	if m[0]&methodMask != Method2 {
		return nil, fmt.Errorf("%w %d", ErrMethod, m[0]&methodMask)
	}
	msg := &Message{IsClient: client}
	if client {
		copy(msg.PreMaster[:], r.take(PreMasterLen))
	}
	copy(msg.Random1[:], r.take(RandomLen))
	copy(msg.Random2[:], r.take(RandomLen))
	if r.err != nil {
		return nil, r.err
	}
	// OpenVPN refuses a message without an options string (read_string < 0 for length 0).
	if len(r.b) >= 2 && binary.BigEndian.Uint16(r.b) == 0 {
		return nil, fmt.Errorf("%w: empty options string", ErrMalformed)
	}
	msg.Options = r.str(MaxOptionsLen)
	if r.err != nil {
		return nil, r.err
	}
	if msg.Options == "" {
		return nil, fmt.Errorf("%w: empty options string", ErrMalformed)
	}
	// Older peers may end the message after the options; username, password and peer-info are optional.
	if len(r.b) == 0 {
		return msg, nil
	}
	msg.Username = r.str(MaxUserPassLen)
	msg.Password = r.str(MaxUserPassLen)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) >= 2 {
		msg.PeerInfo = r.str(MaxPeerInfoLen)
		msg.HasPeerInfo = r.err == nil
		if r.err != nil {
			return nil, r.err
		}
	}
	return msg, nil
}

func appendString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, 0, 0)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)+1))
	dst = append(dst, s...)
	return append(dst, 0)
}

// Append encodes the message. Strings must not contain NUL bytes and must fit the limits; Validate checks.
func (m *Message) Append(dst []byte) []byte {
	dst = append(dst, 0, 0, 0, 0, Method2)
	if m.IsClient {
		dst = append(dst, m.PreMaster[:]...)
	}
	dst = append(dst, m.Random1[:]...)
	dst = append(dst, m.Random2[:]...)
	dst = appendString(dst, m.Options)
	dst = appendString(dst, m.Username)
	dst = appendString(dst, m.Password)
	if m.HasPeerInfo || m.PeerInfo != "" {
		dst = appendString(dst, m.PeerInfo)
	}
	return dst
}

// Validate checks that the message can be encoded so that Parse returns it unchanged.
func (m *Message) Validate() error {
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{{"options", m.Options, MaxOptionsLen}, {"username", m.Username, MaxUserPassLen},
		{"password", m.Password, MaxUserPassLen}, {"peer-info", m.PeerInfo, MaxPeerInfoLen}} {
		if strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("%w: NUL in %s", ErrMalformed, f.name)
		}
		if len(f.v)+1 > f.max {
			return fmt.Errorf("%w: %s", ErrTooLong, f.name)
		}
	}
	if m.Options == "" {
		return fmt.Errorf("%w: empty options string", ErrMalformed)
	}
	return nil
}

// NewServerMessage returns the server's message with fresh randoms.
func NewServerMessage(options string) (*Message, error) {
	m := &Message{Options: options, HasPeerInfo: true}
	if _, err := rand.Read(m.Random1[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(m.Random2[:]); err != nil {
		return nil, err
	}
	return m, nil
}

// NewClientMessage returns a client's message with fresh pre-master and randoms (used by tests and the test
// client).
func NewClientMessage(options, username, password, peerInfo string) (*Message, error) {
	m := &Message{IsClient: true, Options: options, Username: username, Password: password, PeerInfo: peerInfo, HasPeerInfo: true}
	for _, b := range [][]byte{m.PreMaster[:], m.Random1[:], m.Random2[:]} {
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// pHash is P_hash from RFC 2246 section 5.
func pHash(out, secret, seed []byte, h func() hash.Hash) {
	mac := hmac.New(h, secret)
	mac.Write(seed)
	a := mac.Sum(nil)
	for len(out) > 0 {
		mac.Reset()
		mac.Write(a)
		mac.Write(seed)
		b := mac.Sum(nil)
		n := copy(out, b)
		out = out[n:]
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
}

// PRF10 is the TLS 1.0 pseudo-random function: P_MD5 over the first half of the secret XOR P_SHA1 over the
// second half, with label||seed as the seed. It writes len(out) bytes.
func PRF10(out, secret []byte, label string, seed []byte) {
	full := append([]byte(label), seed...)
	half := (len(secret) + 1) / 2
	s1, s2 := secret[:half], secret[len(secret)-half:]
	tmp := make([]byte, len(out))
	pHash(out, s1, full, md5.New)
	pHash(tmp, s2, full, sha1.New)
	for i := range out {
		out[i] ^= tmp[i]
	}
}

// KeyMaterial is the data-channel key block: keys[0] = {cipher[64], hmac[64]} is what the client sends with,
// keys[1] what the server sends with.
type KeyMaterial [KeyMaterialLen]byte

// DeriveKeysPRF computes the key block with OpenVPN's legacy PRF (generate_key_expansion_openvpn_prf).
func DeriveKeysPRF(client, server *Message, clientSID, serverSID [8]byte) *KeyMaterial {
	var master [48]byte
	seed := append(append([]byte{}, client.Random1[:]...), server.Random1[:]...)
	PRF10(master[:], client.PreMaster[:], "OpenVPN master secret", seed)
	seed = append(append([]byte{}, client.Random2[:]...), server.Random2[:]...)
	seed = append(append(seed, clientSID[:]...), serverSID[:]...)
	km := new(KeyMaterial)
	PRF10(km[:], master[:], "OpenVPN key expansion", seed)
	clear(master[:])
	return km
}

// Exporter is the TLS keying-material exporter, as tls.ConnectionState.ExportKeyingMaterial.
type Exporter func(label string, context []byte, length int) ([]byte, error)

// DeriveKeysEKM computes the key block with the TLS exporter (tls-ekm): label EKMLabel, no context.
func DeriveKeysEKM(export Exporter) (*KeyMaterial, error) {
	b, err := export(EKMLabel, nil, KeyMaterialLen)
	if err != nil {
		return nil, fmt.Errorf("keymethod: tls-ekm: %w", err)
	}
	km := new(KeyMaterial)
	copy(km[:], b)
	clear(b)
	return km, nil
}

// IV_PROTO bits (ssl.h).
const (
	ProtoDataV2        = 1 << 1
	ProtoRequestPush   = 1 << 2
	ProtoTLSKeyExport  = 1 << 3
	ProtoAuthPendingKW = 1 << 4
	ProtoNCPP2P        = 1 << 5
	ProtoDNSOption     = 1 << 6
	ProtoCCExitNotify  = 1 << 7
	ProtoAuthFailTemp  = 1 << 8
	ProtoDynTLSCrypt   = 1 << 9
)

// PeerInfo is the decoded peer-info string ("IV_VER=2.6.14\nIV_PLAT=linux\n...").
type PeerInfo struct {
	Version    string   // IV_VER
	Platform   string   // IV_PLAT
	GUIVersion string   // IV_GUI_VER
	Proto      uint32   // IV_PROTO bits
	NCP        int      // IV_NCP
	Ciphers    []string // IV_CIPHERS, nil when absent
	HasCiphers bool
	MTU        int // IV_MTU, 0 when absent
	// Vars holds every KEY=VALUE line in order, including the ones above.
	Vars [][2]string
}

// MaxPeerInfoVars bounds the number of variables parsed.
const MaxPeerInfoVars = 256

// ParsePeerInfo decodes a peer-info string. Malformed lines are skipped, as OpenVPN does.
func ParsePeerInfo(s string) PeerInfo {
	var p PeerInfo
	for _, line := range strings.Split(s, "\n") {
		if len(p.Vars) >= MaxPeerInfoVars {
			break
		}
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), "=")
		if !ok || k == "" {
			continue
		}
		p.Vars = append(p.Vars, [2]string{k, v})
		switch k {
		case "IV_VER":
			p.Version = v
		case "IV_PLAT":
			p.Platform = v
		case "IV_GUI_VER":
			p.GUIVersion = v
		case "IV_PROTO":
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				p.Proto = uint32(n)
			}
		case "IV_NCP":
			if n, err := strconv.Atoi(v); err == nil {
				p.NCP = n
			}
		case "IV_MTU":
			if n, err := strconv.Atoi(v); err == nil {
				p.MTU = n
			}
		case "IV_CIPHERS":
			p.HasCiphers = true
			p.Ciphers = nil
			for _, c := range strings.Split(v, ":") {
				if c != "" {
					p.Ciphers = append(p.Ciphers, c)
				}
			}
		}
	}
	return p
}

// String encodes the variables back into a peer-info string.
func (p *PeerInfo) String() string {
	var b strings.Builder
	for _, kv := range p.Vars {
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(kv[1])
		b.WriteByte('\n')
	}
	return b.String()
}

// Get returns the value of the first variable named k.
func (p *PeerInfo) Get(k string) (string, bool) {
	for _, kv := range p.Vars {
		if kv[0] == k {
			return kv[1], true
		}
	}
	return "", false
}

// OptionValue returns the value of option key in an OCC options string ("V4,dev-type tun,cipher AES-128-CBC,..."):
// the text after "key ", or "" if the option has no value; ok is false when the option is absent.
func OptionValue(options, key string) (value string, ok bool) {
	for _, item := range strings.Split(options, ",") {
		k, v, _ := strings.Cut(item, " ")
		if k == key {
			return v, true
		}
	}
	return "", false
}

// ServerOptions builds the server's OCC options string. OpenVPN 2.6 clients only compare it for warnings.
func ServerOptions(proto, cipher, auth string, keyBits int) string {
	return fmt.Sprintf("V4,dev-type tun,link-mtu 1559,tun-mtu 1500,proto %s,cipher %s,auth %s,keysize %d,key-method 2,tls-server",
		proto, cipher, auth, keyBits)
}
