// Package openvpn is the OpenVPN protocol engine of the SSL-VPN concentrator: the server side of OpenVPN 2.x
// over TCP and UDP, compatible with stock OpenVPN 2.6 clients. It knows nothing of TUN devices, address pools or
// OTP: the concentrator core plugs in through Backend (admission, addresses, where packets go) and drives
// sessions through Session (packets to the client, cutting a session).
//
// # What it speaks
//
//   - Control channel: hard/soft resets, P_CONTROL_V1, P_ACK_V1, session ids, ack arrays and the reliability
//     layer (windows, retransmission with back-off, in-order delivery); optional tls-crypt (v1).
//   - TLS 1.3 and 1.2 through crypto/tls with the caller's *tls.Config (client certificates, CRL checks).
//   - Key-method 2 (credentials, peer info), data-channel keys from tls-ekm or the legacy TLS 1.0 PRF.
//   - NCP: the strongest cipher both sides support, reported in ConnectRequest.Cipher for the caller to log.
//   - Data channel: AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305 (P_DATA_V2 with peer-id) and AES-128/256-CBC
//     with HMAC-SHA1/256/512; anti-replay window; pings; renegotiation with a lame-duck key.
//   - Push: PUSH_REPLY from the Grant; AUTH_FAILED,<reason>; HALT,<reason> (Session.Close); RESTART on shutdown;
//     the client's explicit-exit-notify (EXIT control message or OCC_EXIT).
//
// Not supported: tls-auth, tls-crypt-v2 (P_CONTROL_HARD_RESET_CLIENT_V3), compression framing (clients configured
// with comp-lzo or compress are refused with AUTH_FAILED saying so), fragment, IPv6 ifconfig push, epoch data
// keys (2.7), floating clients (a UDP client that changes address must reconnect).
//
// # Before a session
//
// A UDP client's hard reset is answered statelessly, once, with a session id the client must echo (OpenVPN 2.6's
// HMAC session id): a session exists only for an address that proved it receives, and nothing is retransmitted
// to one that has not. With tls-crypt, a first packet must be authentic, within five minutes of our clock, and
// not a replay before it gets an answer or a session, over UDP and TCP alike. Sessions that have not connected
// are bounded by MaxHandshakes over both transports and by MaxHandshakesPerSource; a newcomer always gets its
// session, and an older handshake ends to make room: its source's oldest, or the oldest of the source holding
// the most (package shed). See prelogin.go.
//
// # Data flow
//
//	client ──UDP datagram / TCP frame──▶ receive goroutine (UDP: ServeUDP's caller, one per socket;
//	                                     TCP: ServeConn's caller, one per connection)
//	   data (P_DATA_V1/V2) ─ key by key id (lock-free keySet) ─ decrypt in place ─▶ Grant.Uplink.WritePacket
//	   control ─ copied into the session's bounded queue ─▶ control loop
//
//	control loop (one goroutine per session): tls-crypt unwrap, reliable layer per key state, feeds the key
//	state's TLS goroutine through a tlspipe, sends acks and retransmissions, timers (handshake timeout,
//	keepalive, renegotiation, lame duck), publishes data keys (copy-on-write, atomic pointer)
//
//	TLS goroutine (one per key state): TLS handshake, key-method 2 exchange, key derivation, Backend.Connect
//	(first key only), then reads the client's control messages (PUSH_REQUEST, EXIT)
//
//	core ─ Session.SendPacket (copy into a pooled buffer, bounded queue, never blocks) ─▶ writer goroutine
//	(one per session): takes what is queued, up to 32 packets, encrypts each in place and writes them in one
//	system call (sendmmsg over UDP, each datagram from the address the client dialed; writev over TCP); also
//	control frames and pings
//
// # Ownership and locking
//
// A session's control state (reliability, key states, timers) belongs to its control loop alone. The data path
// reads keys through an atomic pointer to an immutable keySet; each key's receive state (replay window, CBC
// chaining) is used only by the session's receive goroutine and its send state only by the writer. The UDP
// client table is copy-on-write too: the socket reader looks sessions up without locks, writers serialize on a
// mutex.
//
// Buffers: the pkt passed to Uplink.WritePacket is the receive goroutine's buffer, valid only during the call;
// SendPacket copies pkt before returning, so the caller keeps its buffer; ConnectRequest and Grant are handed
// over for good (the engine never modifies a Grant).
//
// Goroutines: every goroutine has an owner that waits for it. A session's control loop waits for its writer and
// TLS goroutines before it calls Backend.Disconnected; ServeConn and ServeUDP wait for their sessions; Close
// waits for ServeConn and ServeUDP. Nothing is started per packet.
//
// Errors wrap the package's sentinels (ErrPingTimeout, ErrAuthFailed, ...); the library never logs. Health is in
// Server.Stats and Session.Stats.
package openvpn
