package anyconnect

import (
	"context"
	"crypto/x509"
	"net/netip"
	"time"
)

// Backend is what the concentrator core supplies to the engine: it checks logins, admits clients and receives
// their packets. Its methods are called from connection and session goroutines, concurrently for different
// clients; they must return when their context ends.
type Backend interface {
	// Authenticate checks one login to a group: the certificate the TLS handshake verified (nil if none), the
	// user name, password and one-time password the group asks for. It returns who the client is, or an error
	// whose text is shown to the user above the login form (a failed login, lockout, disabled user...). Every
	// call is one attempt for the core's lockout; the engine calls it once per completed form sequence.
	Authenticate(ctx context.Context, req *AuthRequest) (*Identity, error)
	// Connect admits an authenticated client on its first CONNECT: limits, revocation, an address, routes and
	// the uplink. An error refuses the client (503, the text as X-Reason, which openconnect prints). s stays
	// valid until Disconnected; the core may keep it to send packets or to cut the session. A client that
	// reconnects with its cookie after losing its connection is the same session: Connect is not called again.
	Connect(ctx context.Context, req *ConnectRequest, s Session) (*Grant, error)
	// Disconnected is called exactly once for every session whose Connect succeeded, after the session has
	// stopped using the Grant's Uplink and its cookie is invalid. reason wraps one of the package's errors
	// (ErrClientExit, ErrKilled, ErrReconnectTimeout, ...).
	Disconnected(s Session, reason error)
}

// ReconnectChecker may be implemented by a Backend to check a client again each time it comes back with its
// cookie on a new TLS connection, where Connect is not called: the user may have been disabled or deleted since
// the login. An error refuses the CONNECT (401, its text as X-Reason) and ends the session; it must return when
// ctx ends.
type ReconnectChecker interface {
	CheckReconnect(ctx context.Context, req *ConnectRequest, s Session) error
}

// HandshakeObserver may be implemented by a Backend to hear about clients that fail before a login or a
// CONNECT completes (TLS failures, timeouts, malformed requests, bad cookies); the caller logs them. It is
// called from connection goroutines and must not block.
type HandshakeObserver interface {
	HandshakeFailed(remote netip.AddrPort, err error)
}

// SessionObserver may be implemented by a Backend to hear about a session's transports: reconnects, lost
// connections, DTLS coming up or falling back to TLS. It is called from session goroutines and must not block.
type SessionObserver interface {
	SessionEvent(s Session, ev Event)
}

// EventKind says what happened to a session's transport.
type EventKind int

// Event kinds.
const (
	EventReconnected EventKind = iota + 1 // the client came back with its cookie on a new TLS connection
	EventDetached                         // the TLS connection was lost; the session waits for a reconnect
	EventDTLSUp                           // data moves over DTLS
	EventDTLSDown                         // DTLS ended or went quiet; data moves over TLS again
)

func (k EventKind) String() string {
	switch k {
	case EventReconnected:
		return "reconnected"
	case EventDetached:
		return "detached"
	case EventDTLSUp:
		return "dtls-up"
	case EventDTLSDown:
		return "dtls-down"
	}
	return "unknown"
}

// Event is one transport change of a session.
type Event struct {
	Kind   EventKind
	Remote netip.AddrPort // the client's address on the new transport (reconnect, DTLS up)
	Cipher string         // the DTLS cipher suite (DTLS up)
	Err    error          // why (detached, DTLS down)
}

// AuthRequest is one login to check. It is owned by the backend once passed.
type AuthRequest struct {
	Remote netip.AddrPort
	// Group is the connection profile's Name.
	Group string
	// Certificate is the client certificate the TLS handshake verified against the server's CAs (the leaf of
	// VerifiedChains[0]), or nil.
	Certificate    *x509.Certificate
	VerifiedChains [][]*x509.Certificate
	// Username and Password are as typed; empty when the group does not ask for them.
	Username, Password string
	// OTP is the one-time password, when the group asks for one (HasOTP).
	OTP    string
	HasOTP bool
	// What the client says it is.
	ClientVersion string // <version>, e.g. "v9.01"
	DeviceID      string // <device-id>, e.g. "linux-64"
	UserAgent     string
}

// Identity is who a login authenticated. The engine keeps it with the session cookie and hands it back in
// ConnectRequest; it never changes it.
type Identity struct {
	// User is the name the session is known by (the user name, or the certificate's common name).
	User string
	// Certificate is the verified client certificate the login used, if any.
	Certificate *x509.Certificate
	// Data is the backend's own, for Connect.
	Data any
}

// ConnectRequest is what the engine knows about a client that asks for its tunnel. It is owned by the backend
// once passed.
type ConnectRequest struct {
	Remote   netip.AddrPort
	Group    string
	Identity *Identity
	// TLSVersion and CipherSuite are of the connection that carries CONNECT (tls.VersionTLS13, ...).
	TLSVersion, CipherSuite uint16
	// The client's CONNECT headers.
	Hostname         string     // X-CSTP-Hostname
	UserAgent        string     // User-Agent
	RequestedAddress netip.Addr // X-CSTP-Address: the address the client had before (a restart with --cookie)
	BaseMTU          int        // X-CSTP-Base-MTU
	// DTLS reports whether the client asked for DTLS with PSK-NEGOTIATE and the server offered it.
	DTLS bool
}

// Grant is the backend's answer to an admitted client: its address, what to push, and where its packets go.
// The engine reads it once; the backend must not change it afterwards.
type Grant struct {
	// Uplink receives each IP packet from the client. Required.
	Uplink Uplink
	// Address is the client's tunnel address with the pool's prefix length (10.8.0.2/24): pushed as
	// X-CSTP-Address and X-CSTP-Netmask. Required, IPv4.
	Address netip.Prefix
	// Routes are pushed as X-CSTP-Split-Include: the networks the client sends through the tunnel. The pool's
	// network is always included, so an empty list means "the pool only", never "everything".
	Routes []netip.Prefix
	// FullTunnel sends all of the client's traffic through the tunnel (no split-include at all); Routes is then
	// ignored. ExcludeRoutes still apply.
	FullTunnel bool
	// ExcludeRoutes are pushed as X-CSTP-Split-Exclude.
	ExcludeRoutes []netip.Prefix
	// DNS servers (X-CSTP-DNS), the default search domain and split-DNS domains.
	DNS           []netip.Addr
	DefaultDomain string
	SplitDNS      []string
	// Banner is shown by the client after connecting (X-CSTP-Banner).
	Banner string
	// SessionTimeout, when positive, replaces the server's for this session.
	SessionTimeout time.Duration
}

// Uplink is where a session's packets from the client go (the core's TUN writer). WritePacket is called from
// the session's TLS reader and DTLS reader goroutines, so concurrently while a client moves between the two;
// pkt is valid only during the call (the core copies what it keeps) and the core must check its source
// address. An error counts the packet as dropped. The core may hold packets until Flush, which the engine calls
// when it has no more of the session's packets at hand (the end of a batch of datagrams, or of what one read of
// the TLS connection brought).
type Uplink interface {
	WritePacket(pkt []byte) error
	Flush()
}

// Session is one connected client, as the core sees it: it survives the client's reconnects with its cookie.
// All methods are safe for concurrent use.
type Session interface {
	// ID is unique among the sessions of a Server.
	ID() uint64
	// Group is the connection profile's Name; Identity what Authenticate returned.
	Group() string
	Identity() *Identity
	// Remote is the client's address on its current (or last) TLS connection.
	Remote() netip.AddrPort
	// SendPacket queues an IP packet for the client, over DTLS when it is up, else over TLS. The engine copies
	// pkt before returning; the caller keeps ownership of pkt. It never blocks: it returns false, counting a
	// drop, when the session's queue is full, no buffer is free, the session has no connection (waiting for a
	// reconnect) or is closed.
	SendPacket(pkt []byte) bool
	// Close cuts the session: its cookie becomes invalid at once (the client cannot come back with it), the
	// client is told why (DISCONNECT with reason, which openconnect prints) and the session ends shortly
	// after. It does not block and is idempotent.
	Close(reason string)
	// Stats returns the session's counters.
	Stats() SessionStats
	// DTLS reports whether data to the client currently goes over DTLS.
	DTLS() bool
}

// SessionStats are one session's counters.
type SessionStats struct {
	PacketsIn, BytesIn   uint64 // IP packets from the client handed to the uplink
	PacketsOut, BytesOut uint64 // IP packets sent to the client
	DTLSPacketsIn        uint64 // of PacketsIn, those that came over DTLS
	DTLSPacketsOut       uint64 // of PacketsOut, those sent over DTLS
	Dropped              uint64 // packets dropped: queue full, no buffer, no connection, uplink error
	Reconnects           uint64 // times the client came back with its cookie
	DTLSHandshakes       uint64 // DTLS handshakes completed
	DTLSCipher           string // the cipher suite of the current or last DTLS connection
	DTLSUp               bool
}
