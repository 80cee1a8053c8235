package openvpn

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/tlscrypt"
)

// Config is what the engine needs from the concentrator. The zero value of every field but TLS means its
// default. A Config is read once by NewServer; later changes have no effect.
type Config struct {
	// TLS is the server side of the control channel's TLS: certificate, ClientAuth, ClientCAs and
	// VerifyPeerCertificate (CRL). It is cloned; the engine raises MinVersion to TLS 1.2 and disables session
	// tickets (OpenVPN never resumes). Required.
	TLS *tls.Config

	// DataCiphers are the data-channel ciphers the server accepts; NCP picks the strongest one the client also
	// offers. Names as OpenVPN spells them: AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305, AES-256-CBC,
	// AES-128-CBC. Default: AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305.
	DataCiphers []string
	// Auth is the HMAC digest used with CBC ciphers: SHA1 (OpenVPN's default), SHA256 or SHA512. A client whose
	// options string names another digest is refused with a clear reason.
	Auth string
	// TLSCrypt is the contents of a tls-crypt (v1) static key file; nil disables tls-crypt.
	TLSCrypt []byte
	// DisableKeyExport makes the engine derive data-channel keys with the legacy TLS 1.0 PRF even for clients
	// that support tls-ekm.
	DisableKeyExport bool

	// Keepalive is the ping interval: pushed to the client ("ping") and used by the server. Default 10s.
	Keepalive time.Duration
	// KeepaliveTimeout is pushed as "ping-restart"; like OpenVPN's keepalive directive, the server itself waits
	// twice as long before it drops a silent client. Default 60s.
	KeepaliveTimeout time.Duration
	// RenegotiateAfter is how long a data-channel key lives before the server starts a renegotiation; negative
	// disables server-initiated renegotiation (clients may still renegotiate). Default 1h.
	RenegotiateAfter time.Duration
	// HandshakeTimeout bounds the time from a client's first packet to its PUSH_REPLY (TLS, key exchange and
	// Backend.Connect), and each renegotiation. Default 30s.
	HandshakeTimeout time.Duration
	// LameDuck is how long the previous key still decrypts after a renegotiation. Default 60s.
	LameDuck time.Duration
	// ControlRetransmit is the first control-channel retransmission timeout; it doubles up to 8 times that.
	// Default 1s.
	ControlRetransmit time.Duration

	// QueueLen is each session's LAN-to-client queue, in packets. Default 256.
	QueueLen int
	// MaxBuffers bounds the packet buffers of all queues together. Default 8192 (16 MiB).
	MaxBuffers int
	// MaxHandshakes bounds the clients, over TCP and UDP together, that have a session but have not connected
	// yet; at the bound the oldest of the source holding the most is ended to make room for a new one. Default
	// 256.
	MaxHandshakes int
	// MaxHandshakesPerSource bounds them per source, an IPv4 address or an IPv6 /64; at the bound the source's
	// oldest is ended to make room for its new one. Default 16.
	MaxHandshakesPerSource int
}

// resolved is a Config with defaults applied and names looked up.
type resolved struct {
	Config
	tls      *tls.Config
	ciphers  []datachannel.Cipher
	digest   datachannel.Digest
	tlsCrypt *tlscrypt.Key
}

func (c Config) resolve() (*resolved, error) {
	var errs []string
	r := &resolved{Config: c}
	if c.TLS == nil {
		errs = append(errs, "TLS: a server certificate configuration is required")
	} else {
		r.tls = c.TLS.Clone()
		if r.tls.MinVersion < tls.VersionTLS12 {
			r.tls.MinVersion = tls.VersionTLS12
		}
		r.tls.SessionTicketsDisabled = true
		if len(r.tls.Certificates) == 0 && r.tls.GetCertificate == nil && r.tls.GetConfigForClient == nil {
			errs = append(errs, "TLS: no server certificate")
		}
	}
	names := c.DataCiphers
	if len(names) == 0 {
		names = []string{"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"}
	}
	needDigest := false
	for _, n := range names {
		ci, ok := datachannel.LookupCipher(n)
		if !ok {
			errs = append(errs, fmt.Sprintf("DataCiphers: %q is not supported (use AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305, AES-256-CBC or AES-128-CBC)", n))
			continue
		}
		needDigest = needDigest || !ci.AEAD
		r.ciphers = append(r.ciphers, ci)
	}
	r.DataCiphers = nil
	for _, ci := range r.ciphers {
		r.DataCiphers = append(r.DataCiphers, ci.Name)
	}
	auth := c.Auth
	if auth == "" {
		auth = "SHA1"
	}
	if d, ok := datachannel.LookupDigest(auth); ok {
		r.digest = d
		r.Auth = d.Name
	} else if needDigest {
		errs = append(errs, fmt.Sprintf("Auth: %q is not supported (use SHA1, SHA256 or SHA512)", c.Auth))
	}
	if c.TLSCrypt != nil {
		k, err := tlscrypt.ParseKey(c.TLSCrypt)
		if err != nil {
			errs = append(errs, "TLSCrypt: "+err.Error())
		}
		r.tlsCrypt = k
	}
	def := func(d *time.Duration, v time.Duration, name string) {
		if *d == 0 {
			*d = v
		} else if *d < 0 {
			errs = append(errs, name+": must not be negative")
		}
	}
	def(&r.Keepalive, 10*time.Second, "Keepalive")
	def(&r.KeepaliveTimeout, 60*time.Second, "KeepaliveTimeout")
	def(&r.HandshakeTimeout, 30*time.Second, "HandshakeTimeout")
	def(&r.LameDuck, 60*time.Second, "LameDuck")
	def(&r.ControlRetransmit, time.Second, "ControlRetransmit")
	if r.RenegotiateAfter == 0 {
		r.RenegotiateAfter = time.Hour
	}
	if r.KeepaliveTimeout < 2*r.Keepalive {
		errs = append(errs, fmt.Sprintf("KeepaliveTimeout (%v) must be at least twice Keepalive (%v)", r.KeepaliveTimeout, r.Keepalive))
	}
	if r.Keepalive%time.Second != 0 || r.KeepaliveTimeout%time.Second != 0 {
		errs = append(errs, "Keepalive and KeepaliveTimeout must be whole seconds (they are pushed to the client in seconds)")
	}
	if r.QueueLen <= 0 {
		r.QueueLen = 256
	}
	if r.MaxBuffers <= 0 {
		r.MaxBuffers = 8192
	}
	if r.MaxHandshakes <= 0 {
		r.MaxHandshakes = 256
	}
	if r.MaxHandshakesPerSource <= 0 {
		r.MaxHandshakesPerSource = 16
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
	}
	return r, nil
}
