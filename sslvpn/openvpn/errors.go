package openvpn

import "errors"

// Errors of the engine. Session end reasons handed to Backend.Disconnected and errors returned by the Serve
// methods wrap one of these; test them with errors.Is.
var (
	// ErrClosed: the server or session was closed.
	ErrClosed = errors.New("openvpn: closed")
	// ErrConfig: the configuration is invalid.
	ErrConfig = errors.New("openvpn: invalid configuration")
	// ErrProtocol: the peer broke the protocol (malformed packet, bad key-method message, overflow).
	ErrProtocol = errors.New("openvpn: protocol error")
	// ErrTLS: the TLS handshake failed (bad or revoked certificate, no common version...).
	ErrTLS = errors.New("openvpn: TLS handshake failed")
	// ErrHandshakeTimeout: the client did not complete TLS, key exchange and authentication in time.
	ErrHandshakeTimeout = errors.New("openvpn: handshake timeout")
	// ErrAuthFailed: the backend refused the client (AUTH_FAILED was sent).
	ErrAuthFailed = errors.New("openvpn: authentication failed")
	// ErrNoCommonCipher: NCP found no cipher both ends support.
	ErrNoCommonCipher = errors.New("openvpn: no shared data-channel cipher")
	// ErrPingTimeout: nothing was received from the client for the keepalive timeout.
	ErrPingTimeout = errors.New("openvpn: ping timeout")
	// ErrClientExit: the client said it is leaving (explicit-exit-notify).
	ErrClientExit = errors.New("openvpn: client exited")
	// ErrKilled: the session was cut by the caller (Session.Close).
	ErrKilled = errors.New("openvpn: session closed by server")
	// ErrShutdown: the server is shutting down.
	ErrShutdown = errors.New("openvpn: server shutting down")
	// ErrTransport: the connection failed (TCP reset or EOF, socket error).
	ErrTransport = errors.New("openvpn: transport error")
	// ErrReplaced: a new connection from the same UDP address replaced this session.
	ErrReplaced = errors.New("openvpn: replaced by a new connection from the same address")
	// ErrUnsupported: the client asked for something this engine does not do (tls-crypt-v2, a cipher...).
	ErrUnsupported = errors.New("openvpn: unsupported by this server")
	// ErrBusy: too many handshakes are in progress: this one was ended to make room for a new client (of its
	// own source, or of any when its source held the most).
	ErrBusy = errors.New("openvpn: too many handshakes in progress")
)
