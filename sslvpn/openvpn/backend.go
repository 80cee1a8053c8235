package openvpn

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"

	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/push"
)

// Backend is what the concentrator core supplies to the engine. Its methods are called from session goroutines,
// concurrently for different sessions.
type Backend interface {
	// Connect is called once per client, after TLS and the key-method 2 exchange: it authenticates (OTP,
	// lockout, session limits...), allocates an address and returns the client's settings and uplink, or an
	// error whose text is sent to the client as "AUTH_FAILED,<text>" (the stock client logs it). It must return
	// when ctx ends (the handshake timeout or the session's end). s stays valid until Disconnected; the core may
	// keep it to send packets or to cut the session.
	Connect(ctx context.Context, req *ConnectRequest, s Session) (*Grant, error)
	// Disconnected is called exactly once for every session whose Connect succeeded, after the session has
	// stopped using the Grant's Uplink. reason wraps one of the package's errors (ErrPingTimeout,
	// ErrClientExit, ErrKilled, ...).
	Disconnected(s Session, reason error)
}

// HandshakeObserver may be implemented by a Backend to hear about clients that never reach Connect (TLS failures,
// timeouts, unsupported options); the caller logs them.
type HandshakeObserver interface {
	HandshakeFailed(remote netip.AddrPort, transport Transport, err error)
}

// Transport is the client's transport.
type Transport string

// The transports.
const (
	TCP Transport = "tcp"
	UDP Transport = "udp"
)

// ConnectRequest is what the engine knows about a client when it asks the backend to admit it. It is owned by
// the backend once passed.
type ConnectRequest struct {
	Remote    netip.AddrPort
	Transport Transport
	// PeerCertificates and VerifiedChains are from the TLS handshake (tls.ConnectionState).
	PeerCertificates []*x509.Certificate
	VerifiedChains   [][]*x509.Certificate
	TLSVersion       uint16
	// Username and Password are as the client sent them (auth-user-pass); with a static challenge the password
	// is "SCRV1:<base64 password>:<base64 response>" (see ParseStaticChallenge).
	Username, Password string
	PeerInfo           PeerInfo
	// Options is the client's OCC options string ("V4,dev-type tun,...,cipher AES-128-CBC,auth SHA1,...").
	Options string
	// Cipher is the data-channel cipher NCP chose, for the caller to log.
	Cipher string
	// Auth is the HMAC digest in use with a CBC cipher, "" with an AEAD cipher.
	Auth string
	// KeyDerivation is "tls-ekm" or "prf".
	KeyDerivation string
}

// PeerInfo is the client's peer-info (IV_* variables).
type PeerInfo struct {
	Version    string   // IV_VER, e.g. "2.6.14"
	Platform   string   // IV_PLAT, e.g. "linux"
	GUIVersion string   // IV_GUI_VER
	Proto      uint32   // IV_PROTO feature bits
	Ciphers    []string // IV_CIPHERS
	// Vars holds every variable in the order sent.
	Vars [][2]string
}

func peerInfoFrom(p *keymethod.PeerInfo) PeerInfo {
	return PeerInfo{Version: p.Version, Platform: p.Platform, GUIVersion: p.GUIVersion, Proto: p.Proto,
		Ciphers: p.Ciphers, Vars: p.Vars}
}

// Grant is the backend's answer to an admitted client: what to push, and where its packets go. The engine reads
// it once; the backend must not change it afterwards.
type Grant struct {
	// Uplink receives each decrypted IP packet from the client. Required.
	Uplink Uplink

	// Topology decides how Address and Gateway are pushed. Default TopologySubnet.
	Topology Topology
	// Address is the client's tunnel address with the pool's prefix length (subnet: 10.8.0.2/24); with net30 the
	// prefix length is ignored. Required.
	Address netip.Prefix
	// Gateway is the server's tunnel address (subnet: pushed as route-gateway, e.g. 10.8.0.1) or, with net30,
	// the remote end of the client's /30 (ifconfig 10.8.0.6 10.8.0.5). Required.
	Gateway netip.Addr
	// Routes are pushed as "route" options (the server's local networks, the DNS server's address).
	Routes []netip.Prefix
	// RedirectGateway pushes "redirect-gateway def1": the client sends all its traffic through the tunnel.
	RedirectGateway bool
	// DNS servers, pushed as "dhcp-option DNS".
	DNS []netip.Addr
	// ExtraPush are further options pushed verbatim (no commas), e.g. "dhcp-option DOMAIN corp.example".
	ExtraPush []string
}

// Topology is how tunnel addresses are laid out.
type Topology int

// Topologies.
const (
	TopologySubnet Topology = iota // one address per client in a shared subnet
	TopologyNet30                  // one /30 per client
)

// Uplink is where a session's decrypted packets go (the core's TUN writer). WritePacket is called from the
// session's receive goroutine, one packet at a time; pkt is only valid during the call (the core copies what
// it keeps) and the core must check its source address. An error counts the packet as dropped. The core may hold
// packets until Flush, which the engine calls when it has no more of the session's packets at hand (the end of
// a batch of datagrams, or of what one read of the TCP connection brought).
type Uplink interface {
	WritePacket(pkt []byte) error
	Flush()
}

// Session is one connected client, as the core sees it. All methods are safe for concurrent use.
type Session interface {
	// ID is unique among the sessions of a Server.
	ID() uint64
	// Remote is the client's address.
	Remote() netip.AddrPort
	// Transport is the client's transport.
	Transport() Transport
	// PeerID is the client's OpenVPN peer-id.
	PeerID() uint32
	// SendPacket queues an IP packet for the client. The engine copies pkt before returning; the caller keeps
	// ownership of pkt. It never blocks: it returns false, counting a drop, when the session's queue is full,
	// the buffer pool is exhausted, the session has no data key yet, or the session is closed.
	SendPacket(pkt []byte) bool
	// Close cuts the session: the client is told to stop ("HALT,<reason>", which it logs) and the session ends
	// shortly after. It does not block and is idempotent.
	Close(reason string)
	// Stats returns the session's counters.
	Stats() SessionStats
}

// SessionStats are one session's counters.
type SessionStats struct {
	PacketsIn, BytesIn   uint64 // decrypted IP packets handed to the uplink
	PacketsOut, BytesOut uint64 // IP packets encrypted and sent
	Dropped              uint64 // packets dropped: queue full, no key, uplink error, no buffer
	DecryptErrors        uint64 // packets that failed authentication or replay checks
	Renegotiations       uint64 // completed key renegotiations
	Cipher               string
}

// pushOptions turns a grant into the options of the PUSH_REPLY, before the engine's own (ping, peer-id,
// cipher, protocol flags).
func (g *Grant) pushOptions() ([]string, error) {
	if g.Uplink == nil {
		return nil, fmt.Errorf("%w: grant without an uplink", ErrConfig)
	}
	if !g.Address.IsValid() || !g.Address.Addr().Is4() || !g.Gateway.Is4() {
		return nil, fmt.Errorf("%w: grant needs an IPv4 address and gateway (got %v, %v)", ErrConfig, g.Address, g.Gateway)
	}
	var opts []string
	if g.RedirectGateway {
		opts = append(opts, "redirect-gateway def1")
	}
	for _, r := range g.Routes {
		opts = append(opts, push.Route(r))
	}
	for _, d := range g.DNS {
		opts = append(opts, "dhcp-option DNS "+d.String())
	}
	switch g.Topology {
	case TopologySubnet:
		opts = append(opts, "route-gateway "+g.Gateway.String(), "topology subnet")
	case TopologyNet30:
		opts = append(opts, "topology net30")
	default:
		return nil, fmt.Errorf("%w: unknown topology %d", ErrConfig, g.Topology)
	}
	for _, o := range g.ExtraPush {
		if err := push.ValidOption(o); err != nil {
			return nil, fmt.Errorf("%w: ExtraPush: %v", ErrConfig, err)
		}
		opts = append(opts, o)
	}
	if g.Topology == TopologySubnet {
		opts = append(opts, fmt.Sprintf("ifconfig %s %s", g.Address.Addr(), push.Netmask(g.Address.Bits())))
	} else {
		opts = append(opts, fmt.Sprintf("ifconfig %s %s", g.Address.Addr(), g.Gateway))
	}
	return opts, nil
}

// sanitizeReason makes text safe inside a control message.
func sanitizeReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}
