// Package anyconnect is the AnyConnect protocol engine of the SSL-VPN concentrator: the gateway side of Cisco's
// AnyConnect SSL VPN (aggregate authentication over HTTPS, CSTP over TLS, DTLS), compatible with the stock
// openconnect client and Cisco's clients. It knows nothing of TUN devices, address pools, passwords, OTP or
// user databases: the concentrator core plugs in through Backend (logins, admission, addresses, where packets
// go) and drives sessions through Session (packets to the client, cutting a session).
//
// # What it speaks
//
//   - TLS 1.3 and 1.2 through crypto/tls with the caller's *tls.Config (client certificates optional or
//     required, CA names in the request); one TLS record per CSTP frame, as openconnect expects.
//   - HTTP/1.1 (internal/httpwire): POST / and /auth with config-auth XML (internal/authxml): init,
//     auth-reply, logout; GET of the login page; GET /profiles/<group>.xml (the group's client profile, for a
//     holder of a cookie of that group); CONNECT /CSCOSSLC/tunnel with the webvpn cookie.
//   - Login: connection profiles (groups) in a list with a default, chosen by group-select, label or URL path;
//     a main form (user name, password) and, when the group wants a one-time password, a challenge form;
//     certificate-only groups skip both. Backend.Authenticate sees one attempt with every factor. A failed
//     login shows the main form again with the backend's message. Success answers with the session token
//     (webvpn cookie, Max-Age), the server certificate's SHA-1 and the profile manifest with its SHA-1.
//     Asking for a form keeps nothing on the server (the main form's handle is a sealed token); a login keeps
//     state only between the main form and the challenge. Those pending logins and the cookies not used yet
//     are bounded per connection, per source (an IPv6 source is its /64) and in total; past a bound the
//     oldest gives way and the newest is never refused, so a stranger's flood sheds its own (package shed).
//   - CSTP (internal/cstp): the 8-byte STF framing with DATA, DPD-REQ/RESP, KEEPALIVE, DISCONNECT, TERMINATE;
//     the CONNECT answer carries X-CSTP-Address/-Netmask/-Split-Include (or none: full tunnel)/-DNS/-MTU/-DPD/
//     -Keepalive/-Idle-Timeout/-Session-Timeout and the X-DTLS set.
//   - DTLS 1.2 with PSK-NEGOTIATE: the key is the TLS exporter "EXPORTER-openconnect-psk" (32 bytes), the
//     session is found by the application id the client puts in its ClientHello (internal/dtlsid); pion/dtls
//     does the handshake and the records. Data moves to DTLS once it is up and back to CSTP when it goes quiet
//     or the client sends over TLS again, without touching the session.
//   - Cookie reconnect: a session that loses its TLS connection waits CookieLifetime for the client to come
//     back with its cookie (a reconnect, or a new openconnect with --cookie); it is the same session, same
//     Grant, same address, and Backend.Connect is not called again (a ReconnectChecker backend checks the client
//     again instead). In a group that requires a certificate, every CONNECT must present the login's certificate.
//     A session's end, whatever its reason, invalidates its cookie; Session.Close and Server.Revoke are how the
//     core cuts one.
//
// Not supported: the legacy DTLS of Cisco's clients (X-DTLS-Master-Secret resumption, X-DTLS12-CipherSuite):
// they run over TLS only; DTLS over TLS 1.2 without extended master secret (the exporter would be open to the
// triple-handshake attack; such clients run over TLS); compression (CSTP/DTLS Content-Encoding); IPv6 in the
// tunnel; host scan (CSD); SAML/SSO; rekeying (X-CSTP-Rekey-Method: none); the non-XML (form-encoded) login.
//
// # Data flow
//
//	client ──TCP──► demux ──► ServeConn (one goroutine per connection: the caller's)
//	                            TLS handshake ─► HTTP requests ─► login forms / cookie / profile
//	                            CONNECT ─► Backend.Connect (first time) ─► session ─► CSTP reader:
//	                               DATA ─► Grant.Uplink.WritePacket; DPD-REQ ─► control queue; DISCONNECT ─► end
//	client ──UDP──► ServeDTLS (one goroutine per socket) ─► peer by address (copy-on-write map)
//	                  ─► peer queue (bounded) ─► pion DTLS server (goroutine per peer) ─► DTLS reader:
//	                     DATA ─► Grant.Uplink.WritePacket; DPD-REQ ─► answered in place (MTU probes)
//	core ─ Session.SendPacket (copy into a pooled buffer, bounded queue, never blocks) ─► writer (one goroutine
//	       per session): frames in place in the buffer's headroom; DTLS if up, else CSTP, corked per burst
//	session control loop (one goroutine per session): DPD probes and timeouts, idle and session limits,
//	       the reconnect window, the end (DISCONNECT to the client, Backend.Disconnected last)
//
// # Ownership and locking
//
// A session's current transports are atomic pointers read per packet; its lifecycle fields are under its
// mutex. The server's tables (pending logins, cookies, sessions, application ids) are under the server's
// mutex, held briefly and never while calling the backend. Lock order: session, then server, then the DTLS
// state. The DTLS peer table is copy-on-write; the socket reader looks peers up without locks.
//
// Buffers: the pkt passed to Uplink.WritePacket is the reader's buffer, valid only during the call;
// SendPacket copies pkt into a buffer of a bounded pool (sslvpn/internal/bufpool) before returning; the writer
// returns it after the write. ServeDTLS copies each datagram into a pooled buffer for its peer's queue. The
// CSTP framing allocates nothing per packet; pion/dtls allocates per record.
//
// Goroutines: every goroutine has an owner that waits for it. A session's control loop waits for its writer,
// its CSTP readers (the ServeConn goroutines carrying it) and its DTLS peers before it calls
// Backend.Disconnected; Close waits for every session, ServeConn and ServeDTLS. Nothing is started per packet
// by this package (pion/dtls starts short-lived goroutines per read and write internally).
//
// Errors wrap the package's sentinels (ErrClientExit, ErrKilled, ErrBadCookie, ...); the library never logs.
// Health is in Server.Stats and Session.Stats, and in the optional HandshakeObserver and SessionObserver.
package anyconnect
