package openvpn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"toride/sslvpn/internal/bufpool"
	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/push"
	"toride/sslvpn/openvpn/internal/reliable"
	"toride/sslvpn/openvpn/internal/tlscrypt"
	"toride/sslvpn/openvpn/internal/tlspipe"
	"toride/sslvpn/openvpn/internal/wire"
)

const (
	// maxControlPacket keeps control packets within OpenVPN's default tls-mtu (1250).
	maxControlPacket = 1250
	// pipeLimit bounds the TLS bytes buffered each way per key state.
	pipeLimit = 256 << 10
	// ctrlQueueLen bounds control packets waiting for the loop, and frames waiting for the writer.
	ctrlQueueLen = 64
	// lingerNotify is how long a closing session waits for its last control message (AUTH_FAILED, HALT,
	// RESTART, a TLS alert) to be acknowledged.
	lingerNotify = 2 * time.Second
	// pushRepeat rate-limits answers to repeated PUSH_REQUESTs.
	pushRepeat = time.Second
	// tlsReadBuf holds one TLS record's plaintext.
	tlsReadBuf = 16 << 10
)

// link is a session's transport.
type link interface {
	// writeFrames sends packets in order, in as few system calls as the transport allows: of each frame,
	// frame[:frameHeadroom] is scratch (the TCP length prefix), the packet is the rest; frames itself is scratch
	// too. It may be called by one goroutine at a time (the session's writer).
	writeFrames(frames [][]byte) error
	// close stops the transport for this session; idempotent.
	close()
	// connected is called once when the client has connected (its PUSH_REPLY was sent).
	connected()
	addr() net.Addr
}

// session is one client. Goroutines: the control loop (run), which owns all control-channel state and
// is the only one to modify keys; the writer (writeLoop); one TLS goroutine per key state (runTLS); and the
// transport's receive goroutine, which calls handleIncoming. The loop waits for the others it started.
type session struct {
	srv       *Server
	id        uint64
	peerID    uint32
	transport Transport
	remote    atomic.Pointer[netip.AddrPort] // the client's address; a UDP client's changes when it floats
	link      link
	localSID  wire.SessionID
	remoteSID wire.SessionID
	// afterCookie: the client echoed a stateless answer's session id (localSID), so both hard resets count as
	// exchanged when the session starts.
	afterCookie bool

	ctrlIn      chan []byte       // control packets from the receive goroutine (copies the loop owns)
	events      chan event        // from TLS goroutines and the writer
	wake        chan struct{}     // TLS output is waiting
	closeReq    chan closeRequest // Close and explicit-exit-notify
	ctrlOut     chan []byte       // control frames for the writer
	txq         chan *bufpool.Buf // data for the writer
	tx          txBatch           // the writer's
	pingReq     chan struct{}
	done        chan struct{} // closed when the session terminates
	finished    chan struct{} // closed when every goroutine has ended and the backend was told
	connectedCh chan struct{} // closed when the first key is active
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	keys       atomic.Pointer[keySet]
	uplink     atomic.Pointer[uplinkRef]
	lastRx     atomic.Int64
	lastTx     atomic.Int64
	txMu       sync.RWMutex
	txClosed   bool
	counters   sessionCounters
	cipherName atomic.Pointer[string]

	// Owned by the control loop.
	tc            *tlscrypt.Context
	keyStates     [8]*keyState
	primary       *keyState
	negotiating   *keyState
	lameDuck      *keyState
	lameDuckUntil time.Time
	started       time.Time
	cipher        datachannel.Cipher
	digest        datachannel.Digest
	useEKM        bool
	clientProto   uint32
	// Set by the first key's TLS goroutine before it posts evKeyReady; read by later ones (started after).
	clientSubject []byte
	clientUser    string
	txPeerID      uint32
	grant         *Grant
	pushMsgs      []string
	pushRequested bool
	lastPush      time.Time
	connected     bool
	closing       bool
	closeReason   error
	closeDeadline time.Time
	terminated    bool
	reason        error
	scratch       []byte
}

// keyState is one TLS session and key id: the reliability state of its control messages, the TLS connection
// over them and, once negotiated, its data-channel keys. Owned by the control loop, except conn, which its TLS
// goroutine uses (and the loop writes control messages to once ready).
type keyState struct {
	id      uint8
	initial bool
	send    *reliable.Sender
	recv    *reliable.Receiver
	pipe    *tlspipe.Pipe
	conn    *tls.Conn
	started time.Time
	ready   bool // key-method exchange done, data keys derived
	data    *datachannel.Keys
	dead    bool // TLS goroutine ended
}

type event interface{}

type evKeyReady struct {
	ks      *keyState
	keys    *datachannel.Keys
	cipher  datachannel.Cipher
	digest  datachannel.Digest
	useEKM  bool
	proto   uint32
	failure error // the client cannot be served (no common cipher...): AUTH_FAILED with this reason
}

type evConnected struct {
	ks    *keyState
	grant *Grant
	err   error
}

type evMessage struct {
	ks  *keyState
	msg string
}

type evTLSDone struct {
	ks  *keyState
	err error
}

type evLinkDown struct{ err error }

func newSession(srv *Server, tr Transport, remote netip.AddrPort, l link, remoteSID wire.SessionID, peerID uint32) (*session, error) {
	s := &session{
		srv:         srv,
		id:          srv.nextSessionID.Add(1),
		peerID:      peerID,
		transport:   tr,
		link:        l,
		remoteSID:   remoteSID,
		ctrlIn:      make(chan []byte, ctrlQueueLen),
		events:      make(chan event, 16),
		wake:        make(chan struct{}, 1),
		closeReq:    make(chan closeRequest, 1),
		ctrlOut:     make(chan []byte, ctrlQueueLen),
		txq:         make(chan *bufpool.Buf, srv.cfg.QueueLen),
		pingReq:     make(chan struct{}, 1),
		done:        make(chan struct{}),
		finished:    make(chan struct{}),
		connectedCh: make(chan struct{}),
		txPeerID:    wire.NoPeerID,
	}
	if _, err := randRead(s.localSID[:]); err != nil {
		return nil, err
	}
	if srv.cfg.tlsCrypt != nil {
		s.tc = tlscrypt.New(srv.cfg.tlsCrypt, true)
	}
	s.remote.Store(&remote)
	s.keys.Store(&keySet{})
	now := s.now()
	s.lastRx.Store(now)
	s.lastTx.Store(now)
	return s, nil
}

// resumeAfterCookie makes a session not yet started continue where a stateless answer left off: cookie was our
// session id in it, and with tls-crypt its packet id was 1.
func (s *session) resumeAfterCookie(cookie wire.SessionID) {
	s.localSID, s.afterCookie = cookie, true
	if s.tc != nil {
		s.tc.SetSendPacketID(1)
	}
}

// start launches the control loop and the writer. ctx ending shuts the session down gracefully.
func (s *session) start(ctx context.Context) {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.started = time.Now()
	s.srv.stats.handshakes.Add(1)
	s.wg.Add(1)
	go s.writeLoop()
	go s.run(ctx)
}

// wait blocks until the session has ended completely.
func (s *session) wait() { <-s.finished }

// ID implements Session.
func (s *session) ID() uint64 { return s.id }

// Remote implements Session.
func (s *session) Remote() netip.AddrPort { return *s.remote.Load() }

// Transport implements Session.
func (s *session) Transport() Transport { return s.transport }

// PeerID implements Session.
func (s *session) PeerID() uint32 { return s.peerID }

// closeRequest asks the loop to end the session, first sending notify if it is not empty.
type closeRequest struct {
	err    error
	notify string
}

// Close implements Session.
func (s *session) Close(reason string) {
	s.requestCloseNotify(fmt.Errorf("%w: %s", ErrKilled, reason), push.Halt+","+sanitizeReason(reason))
}

// requestClose ends the session without telling the client (it told us it is leaving).
func (s *session) requestClose(err error) { s.requestCloseNotify(err, "") }

func (s *session) requestCloseNotify(err error, notify string) {
	select {
	case s.closeReq <- closeRequest{err, notify}:
	default: // a close is already pending
	}
}

// Stats implements Session.
func (s *session) Stats() SessionStats {
	st := SessionStats{
		PacketsIn: s.counters.packetsIn.Load(), BytesIn: s.counters.bytesIn.Load(),
		PacketsOut: s.counters.packetsOut.Load(), BytesOut: s.counters.bytesOut.Load(),
		Dropped: s.counters.dropped.Load(), DecryptErrors: s.counters.decryptErrors.Load(),
		Renegotiations: s.counters.renegotiations.Load(),
	}
	if c := s.cipherName.Load(); c != nil {
		st.Cipher = *c
	}
	return st
}

// linkFailed is called by the writer when the transport fails.
func (s *session) linkFailed(err error) {
	s.post(evLinkDown{err})
}

// post hands an event to the loop, giving up when the session has ended.
func (s *session) post(ev event) {
	select {
	case s.events <- ev:
	case <-s.done:
	}
}

func (s *session) wakeup() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the control loop.
func (s *session) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	shutdown := ctx.Done()
	srvShutdown := s.srv.shutdown
	if s.afterCookie {
		// The client has our hard reset (it echoed its session id) and we had its own: message 0 each way is done,
		// and the client still waits for our acknowledgement of its reset (the stateless answer carried none).
		ks := s.newKeyState(0, true, time.Now())
		ks.send.Ack(0)
		ks.recv.Receive(0, wire.ControlHardResetClientV2, nil)
		ks.recv.Next()
	}
	for !s.terminated {
		select {
		case raw := <-s.ctrlIn:
			s.onControl(raw, time.Now())
		case <-s.wake:
		case ev := <-s.events:
			s.onEvent(ev, time.Now())
		case req := <-s.closeReq:
			if req.notify == "" {
				s.terminate(req.err)
			} else {
				s.beginClose(req.err, req.notify)
			}
		case <-shutdown:
			shutdown = nil
			s.beginClose(ErrShutdown, push.Restart)
		case <-srvShutdown:
			srvShutdown = nil
			s.beginClose(ErrShutdown, push.Restart)
		case <-timer.C:
		}
		if s.terminated {
			break
		}
		now := time.Now()
		s.onTimers(now)
		if s.terminated {
			break
		}
		s.flush(now)
		timer.Reset(s.nextWake(now))
	}
	s.wg.Wait()
	s.drainTx()
	s.srv.handshakes.leave(s)
	if s.grant != nil {
		s.srv.stats.active.Add(-1)
		s.srv.backend.Disconnected(s, s.reason)
	} else {
		s.srv.stats.failedHandshakes.Add(1)
		if s.srv.observer != nil {
			s.srv.observer.HandshakeFailed(s.Remote(), s.transport, s.reason)
		}
	}
	close(s.finished)
}

// beginClose sends notify (a control message, "" for none) on the active TLS session, then lets the session
// linger until it is acknowledged or lingerNotify passes.
func (s *session) beginClose(reason error, notify string) {
	if s.closing {
		return
	}
	s.closing, s.closeReason, s.closeDeadline = true, reason, time.Now().Add(lingerNotify)
	ks := s.primary
	if ks == nil && s.keyStates[0] != nil && s.keyStates[0].ready {
		ks = s.keyStates[0]
	}
	if notify != "" && ks != nil && ks.ready && !ks.dead {
		_, _ = ks.conn.Write(append([]byte(notify), 0))
	}
	// flush ends the session once everything sent is acknowledged, onTimers at the deadline.
}

// terminate ends the session at once. The loop exits afterwards and waits for the other goroutines.
func (s *session) terminate(reason error) {
	if s.terminated {
		return
	}
	s.terminated, s.reason = true, reason
	if s.cancel != nil {
		s.cancel()
	}
	s.txMu.Lock()
	s.txClosed = true
	s.txMu.Unlock()
	close(s.done)
	for _, ks := range s.keyStates {
		if ks != nil {
			ks.pipe.Close()
		}
	}
	s.link.close()
}

func (s *session) onControl(raw []byte, now time.Time) {
	var p wire.ControlPacket
	op, keyID, sid, _, err := wire.ParseControlHeader(raw)
	if err != nil {
		s.srv.stats.malformed.Add(1)
		return
	}
	if op == wire.ControlHardResetClientV3 || op == wire.ControlWKCV1 {
		s.terminate(fmt.Errorf("%w: tls-crypt-v2 (%v)", ErrUnsupported, op))
		return
	}
	if sid != s.remoteSID {
		s.srv.stats.malformed.Add(1)
		return
	}
	p.Opcode, p.KeyID, p.SessionID = op, keyID, sid
	body := raw[wire.ControlHeaderLen:]
	if s.tc != nil {
		body, err = s.tc.Unwrap(s.scratch[:0], raw)
		if err != nil {
			s.srv.stats.malformed.Add(1)
			if s.keyStates[0] == nil {
				// Nothing authenticated yet: this is not a client of ours.
				s.terminate(fmt.Errorf("%w: %v", ErrProtocol, err))
			}
			return
		}
		s.scratch = body[:0]
	}
	if err := p.ParseBody(body); err != nil {
		s.srv.stats.malformed.Add(1)
		return
	}
	if p.NumAcks > 0 && p.RemoteSessionID != s.localSID {
		s.srv.stats.malformed.Add(1)
		return
	}
	ks := s.keyStates[p.KeyID]
	if ks == nil {
		ks = s.newKeyStateFor(&p, now)
		if ks == nil {
			return
		}
	}
	s.lastRx.Store(s.now())
	for _, id := range p.AckList() {
		ks.send.Ack(id)
	}
	if !p.Opcode.HasMessageID() {
		return
	}
	ks.recv.Receive(p.MessageID, p.Opcode, p.Payload)
	for {
		m, ok := ks.recv.Next()
		if !ok {
			break
		}
		if m.Opcode != wire.ControlV1 {
			continue // resets carry no TLS data (OpenVPN 2.6 may put early-negotiation TLVs there)
		}
		if err := ks.pipe.Feed(m.Payload); err != nil {
			s.terminate(fmt.Errorf("%w: control channel: %v", ErrProtocol, err))
			return
		}
	}
}

// newKeyStateFor creates the key state a packet with an unknown key id asks for: the initial one on the
// client's hard reset, a renegotiation on its soft reset.
func (s *session) newKeyStateFor(p *wire.ControlPacket, now time.Time) *keyState {
	switch {
	case p.Opcode == wire.ControlHardResetClientV2 && p.KeyID == 0 && s.keyStates[0] == nil && s.primary == nil:
		return s.newKeyState(0, true, now)
	case p.Opcode == wire.ControlSoftResetV1 && s.connected && !s.closing:
		if s.negotiating != nil {
			// Both ends started one; the client's wins.
			s.dropKeyState(s.negotiating)
			s.negotiating = nil
		}
		if s.lameDuck != nil && s.lameDuck.id == p.KeyID {
			s.dropLameDuck()
		}
		if s.primary != nil && s.primary.id == p.KeyID {
			return nil
		}
		ks := s.newKeyState(p.KeyID, false, now)
		s.negotiating = ks
		return ks
	}
	s.srv.stats.malformed.Add(1)
	return nil
}

func (s *session) newKeyState(id uint8, initial bool, now time.Time) *keyState {
	cfg := s.srv.cfg
	ks := &keyState{
		id:      id,
		initial: initial,
		send:    reliable.NewSender(reliable.DefaultSendWindow, cfg.ControlRetransmit, 8*cfg.ControlRetransmit),
		recv:    reliable.NewReceiver(reliable.DefaultRecvWindow),
		started: now,
	}
	ks.pipe = tlspipe.New(pipeLimit, s.wakeup, s.link.addr())
	ks.conn = tls.Server(ks.pipe, cfg.tls)
	op := wire.ControlSoftResetV1
	if initial {
		op = wire.ControlHardResetServerV2
	}
	_, _ = ks.send.Push(op, nil) // message 0 of a fresh sender: cannot fail
	s.keyStates[id] = ks
	s.wg.Add(1)
	go s.runTLS(ks)
	return ks
}

// dropKeyState forgets a key state; its TLS goroutine ends when its pipe closes.
func (s *session) dropKeyState(ks *keyState) {
	ks.pipe.Close()
	if s.keyStates[ks.id] == ks {
		s.keyStates[ks.id] = nil
	}
	s.publishKeys()
}

func (s *session) dropLameDuck() {
	if s.lameDuck != nil {
		s.dropKeyState(s.lameDuck)
		s.lameDuck = nil
	}
}

func (s *session) startRenegotiation(now time.Time) {
	id := (s.primary.id + 1) & wire.KeyIDMask
	if id == 0 {
		id = 1
	}
	if s.lameDuck != nil && s.lameDuck.id == id {
		s.dropLameDuck()
	}
	s.negotiating = s.newKeyState(id, false, now)
}

// publishKeys rebuilds the data path's key set.
func (s *session) publishKeys() {
	ks := &keySet{}
	for _, k := range s.keyStates {
		if k != nil && k.data != nil {
			ks.rx[k.id] = k.data
		}
	}
	if s.primary != nil && s.primary.data != nil && s.connected {
		ks.tx = s.primary.data
		ks.txHdr = wire.NewDataHeader(s.primary.id, s.txPeerID)
	}
	s.keys.Store(ks)
}

// activate makes ks the key the server sends with; the previous one becomes the lame duck.
func (s *session) activate(ks *keyState, now time.Time) {
	old := s.primary
	s.primary = ks
	if old != nil && old != ks {
		s.dropLameDuck()
		s.lameDuck, s.lameDuckUntil = old, now.Add(s.srv.cfg.LameDuck)
		s.counters.renegotiations.Add(1)
	}
	s.publishKeys()
}

func (s *session) onEvent(ev event, now time.Time) {
	switch e := ev.(type) {
	case evLinkDown:
		if s.closing {
			s.terminate(s.closeReason) // the client hung up after our last word, as it should
			return
		}
		s.terminate(fmt.Errorf("%w: %v", ErrTransport, e.err))
	case evTLSDone:
		if s.keyStates[e.ks.id] != e.ks {
			return // a key state we already dropped
		}
		e.ks.dead = true
		if s.closing {
			return
		}
		if e.ks.initial && !e.ks.ready || e.ks == s.negotiating || e.ks == s.primary {
			// Linger so that the TLS alert crypto/tls wrote (bad or revoked certificate...) reaches the client
			// and it can log why.
			s.beginClose(e.err, "")
		}
	case evKeyReady:
		ks := e.ks
		if s.keyStates[ks.id] != ks {
			return
		}
		ks.ready, ks.data = true, e.keys
		if ks.initial {
			s.cipher, s.digest, s.useEKM, s.clientProto = e.cipher, e.digest, e.useEKM, e.proto
			name := e.cipher.Name
			s.cipherName.Store(&name)
			if e.proto&keymethod.ProtoDataV2 != 0 {
				s.txPeerID = s.peerID
			}
			if e.failure != nil {
				s.beginClose(e.failure, push.AuthFailed+","+sanitizeReason(errorText(e.failure)))
				return
			}
		}
		s.publishKeys()
	case evConnected:
		if e.err != nil {
			reason := sanitizeReason(e.err.Error())
			s.beginClose(fmt.Errorf("%w: %v", ErrAuthFailed, e.err), push.AuthFailed+","+reason)
			return
		}
		opts, err := e.grant.pushOptions()
		if err == nil {
			opts = append(opts, s.engineOptions()...)
			s.pushMsgs, err = push.BuildReply(opts)
		}
		if err != nil {
			// A broken grant is the core's bug; the client learns only that it was refused. Disconnected
			// still runs, because Connect succeeded.
			s.grant = e.grant
			s.srv.stats.active.Add(1)
			s.beginClose(err, push.AuthFailed+",server configuration error")
			return
		}
		s.grant = e.grant
		s.srv.stats.active.Add(1)
		if s.closing {
			return // cut during Connect: Disconnected still follows, nothing is pushed
		}
		s.uplink.Store(&uplinkRef{e.grant.Uplink})
		// Clients announcing IV_PROTO_REQUEST_PUSH take the reply without asking (saves their 1s push timer).
		if s.pushRequested || s.clientProto&keymethod.ProtoRequestPush != 0 {
			s.sendPushReply(now)
		}
	case evMessage:
		switch {
		case e.msg == push.Request:
			s.pushRequested = true
			if s.grant != nil && !s.closing {
				s.sendPushReply(now)
			}
		case e.msg == push.Exit:
			s.terminate(ErrClientExit)
		}
	}
}

// engineOptions are the pushed options the engine decides itself.
func (s *session) engineOptions() []string {
	cfg := s.srv.cfg
	opts := []string{
		fmt.Sprintf("ping %d", int(cfg.Keepalive/time.Second)),
		fmt.Sprintf("ping-restart %d", int(cfg.KeepaliveTimeout/time.Second)),
	}
	if s.txPeerID != wire.NoPeerID {
		opts = append(opts, fmt.Sprintf("peer-id %d", s.peerID))
	}
	// The cipher only: a 2.6 client refuses a pushed "auth" (its own, which the handshake checked against the
	// server's, is the one in use).
	opts = append(opts, "cipher "+s.cipher.Name)
	ccExit := s.clientProto&keymethod.ProtoCCExitNotify != 0
	switch {
	case ccExit && s.useEKM:
		opts = append(opts, "protocol-flags cc-exit tls-ekm")
	case ccExit:
		opts = append(opts, "protocol-flags cc-exit")
	case s.useEKM:
		opts = append(opts, "key-derivation tls-ekm")
	}
	return opts
}

func (s *session) sendPushReply(now time.Time) {
	ks := s.keyStates[0]
	if s.primary != nil {
		ks = s.primary
	}
	if ks == nil || !ks.ready || now.Sub(s.lastPush) < pushRepeat {
		return
	}
	s.lastPush = now
	for _, m := range s.pushMsgs {
		if _, err := ks.conn.Write(append([]byte(m), 0)); err != nil {
			s.terminate(fmt.Errorf("%w: control channel: %v", ErrProtocol, err))
			return
		}
	}
	if !s.connected {
		// Send with the first key from now on: our data follows the PUSH_REPLY that makes the client install
		// its keys, and waiting for the reply's ack would drop replies to the client's first packets.
		s.connected = true
		close(s.connectedCh)
		s.activate(ks, now)
		s.srv.handshakes.leave(s)
		s.link.connected()
	}
}

func (s *session) onTimers(now time.Time) {
	cfg := s.srv.cfg
	if s.closing {
		if !now.Before(s.closeDeadline) {
			s.terminate(s.closeReason)
		}
		return
	}
	if !s.connected {
		if now.Sub(s.started) >= cfg.HandshakeTimeout {
			s.terminate(fmt.Errorf("%w (%v)", ErrHandshakeTimeout, cfg.HandshakeTimeout))
		}
		return
	}
	if s.negotiating != nil && now.Sub(s.negotiating.started) >= cfg.HandshakeTimeout {
		s.terminate(fmt.Errorf("%w: renegotiation (%v)", ErrHandshakeTimeout, cfg.HandshakeTimeout))
		return
	}
	if s.lameDuck != nil && !now.Before(s.lameDuckUntil) {
		s.dropLameDuck()
	}
	nowNs := s.now()
	if time.Duration(nowNs-s.lastRx.Load()) >= 2*cfg.KeepaliveTimeout {
		s.terminate(fmt.Errorf("%w (%v)", ErrPingTimeout, 2*cfg.KeepaliveTimeout))
		return
	}
	if time.Duration(nowNs-s.lastTx.Load()) >= cfg.Keepalive {
		select {
		case s.pingReq <- struct{}{}:
		default:
		}
		// Pretend it went out now, so the loop does not spin until the writer sends it.
		s.lastTx.Store(nowNs)
	}
	if s.negotiating == nil && s.primary != nil {
		age := now.Sub(s.primary.started)
		tooMany := s.primary.data != nil && s.primary.data.SentPackets() > datachannel.PIDLimit
		if (cfg.RenegotiateAfter > 0 && age >= cfg.RenegotiateAfter) || tooMany {
			s.startRenegotiation(now)
		}
	}
}

// nextWake is how long the loop may sleep.
func (s *session) nextWake(now time.Time) time.Duration {
	cfg := s.srv.cfg
	next := now.Add(time.Hour)
	at := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	for _, ks := range s.keyStates {
		if ks == nil {
			continue
		}
		if t, ok := ks.send.NextDeadline(); ok {
			at(t)
		}
	}
	switch {
	case s.closing:
		at(s.closeDeadline)
	case !s.connected:
		at(s.started.Add(cfg.HandshakeTimeout))
	default:
		if s.negotiating != nil {
			at(s.negotiating.started.Add(cfg.HandshakeTimeout))
		} else if cfg.RenegotiateAfter > 0 && s.primary != nil {
			at(s.primary.started.Add(cfg.RenegotiateAfter))
		}
		if s.lameDuck != nil {
			at(s.lameDuckUntil)
		}
		base := now.Add(-time.Duration(s.now()))
		at(base.Add(time.Duration(s.lastRx.Load()) + 2*cfg.KeepaliveTimeout))
		at(base.Add(time.Duration(s.lastTx.Load()) + cfg.Keepalive))
	}
	d := next.Sub(now)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// flush moves TLS output into the reliability layers, sends what is due and the acks owed, and advances the
// key states whose last messages were acknowledged.
func (s *session) flush(now time.Time) {
	maxPayload := maxControlPacket - wire.ControlHeaderLen - (1 + 4*wire.SendAcksMax + wire.SessionIDLen) - 4
	if s.tc != nil {
		maxPayload -= tlscrypt.Overhead
	}
	for _, ks := range s.keyStates {
		if ks == nil {
			continue
		}
		for !ks.send.Full() {
			b := ks.pipe.Take(maxPayload)
			if b == nil {
				break
			}
			_, _ = ks.send.Push(wire.ControlV1, b) // not full: cannot fail
		}
		ks.send.Due(now, func(m reliable.Message) { s.sendControl(ks, m.Opcode, m.ID, m.Payload, now) })
		for ks.recv.PendingAcks() > 0 {
			s.sendControl(ks, wire.AckV1, 0, nil, now)
		}
	}
	idle := func(ks *keyState) bool { return ks.send.Empty() && ks.pipe.Pending() == 0 }
	if ks := s.negotiating; ks != nil && ks.ready && idle(ks) {
		s.negotiating = nil
		s.activate(ks, now)
	}
	if s.closing {
		for _, ks := range s.keyStates {
			if ks != nil && !idle(ks) {
				return
			}
		}
		s.terminate(s.closeReason)
	}
}

// sendControl encodes one control packet, with as many owed acks as fit, and queues it for the writer.
func (s *session) sendControl(ks *keyState, op wire.Opcode, id uint32, payload []byte, now time.Time) {
	p := wire.ControlPacket{Opcode: op, KeyID: ks.id, SessionID: s.localSID, MessageID: id, Payload: payload}
	p.NumAcks = ks.recv.TakeAcks(p.Acks[:wire.SendAcksMax])
	if p.NumAcks > 0 {
		p.RemoteSessionID = s.remoteSID
	}
	frame := make([]byte, frameHeadroom, frameHeadroom+wire.ControlHeaderLen+p.BodyLen()+tlscrypt.Overhead)
	if s.tc != nil {
		var err error
		frame, err = s.tc.Wrap(frame, p.AppendHeader(nil), p.AppendBody(nil), now)
		if err != nil {
			s.terminate(fmt.Errorf("%w: %v", ErrProtocol, err))
			return
		}
	} else {
		frame = p.Append(frame)
	}
	select {
	case s.ctrlOut <- frame:
	default:
		s.srv.stats.controlDropped.Add(1) // retransmitted later
	}
}

func errorText(err error) string {
	switch {
	case errors.Is(err, ErrNoCommonCipher):
		return "Data channel cipher negotiation failed (no shared cipher)"
	case errors.Is(err, ErrUnsupported):
		// The client's user reads this: drop the Go error prefix.
		return strings.TrimPrefix(err.Error(), ErrUnsupported.Error()+": ")
	}
	return err.Error()
}
