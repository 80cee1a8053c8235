package anyconnect

import "errors"

// Errors of the engine. Session end reasons handed to Backend.Disconnected, and errors returned by ServeConn and
// ServeDTLS, wrap one of these; test them with errors.Is.
var (
	// ErrClosed: the server was closed, or the session is gone.
	ErrClosed = errors.New("anyconnect: closed")
	// ErrConfig: the configuration or a Grant is invalid.
	ErrConfig = errors.New("anyconnect: invalid configuration")
	// ErrTLS: the TLS handshake failed (no common version, bad client certificate...).
	ErrTLS = errors.New("anyconnect: TLS handshake failed")
	// ErrProtocol: the client broke the protocol (malformed HTTP, XML or frame).
	ErrProtocol = errors.New("anyconnect: protocol error")
	// ErrTimeout: the client did not complete a TLS handshake or an HTTP request in time.
	ErrTimeout = errors.New("anyconnect: timeout")
	// ErrAuthFailed: the backend refused a login (the form was shown again with its message).
	ErrAuthFailed = errors.New("anyconnect: login failed")
	// ErrBadCookie: a CONNECT or download came with a webvpn cookie that is unknown, expired or revoked.
	ErrBadCookie = errors.New("anyconnect: invalid session cookie")
	// ErrRefused: the backend refused to admit a client on CONNECT (limit, pool, revoked...).
	ErrRefused = errors.New("anyconnect: connection refused")
	// ErrBusy: too many DTLS handshakes are in progress; the handshake was turned away (logins are never
	// turned away: past a bound the oldest pending one gives way).
	ErrBusy = errors.New("anyconnect: busy")
	// ErrDPDTimeout: nothing came from the client over its TLS connection for too long; the session waits for
	// it to reconnect.
	ErrDPDTimeout = errors.New("anyconnect: dead peer detected")
	// ErrReconnectTimeout: the session lost its connection and the client did not reconnect within the cookie
	// lifetime.
	ErrReconnectTimeout = errors.New("anyconnect: client did not reconnect in time")
	// ErrIdleTimeout: no data in either direction for the idle timeout.
	ErrIdleTimeout = errors.New("anyconnect: idle timeout")
	// ErrSessionTimeout: the session reached its time limit.
	ErrSessionTimeout = errors.New("anyconnect: session time limit reached")
	// ErrClientExit: the client said it is leaving (DISCONNECT frame or logout).
	ErrClientExit = errors.New("anyconnect: client disconnected")
	// ErrKilled: the session was cut by the caller (Session.Close or Server.Revoke).
	ErrKilled = errors.New("anyconnect: session closed by server")
	// ErrShutdown: the server is shutting down.
	ErrShutdown = errors.New("anyconnect: server shutting down")
	// ErrTransport: a connection failed (TCP reset or EOF, socket error).
	ErrTransport = errors.New("anyconnect: transport error")
)
