package anyconnect

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"toride/sslvpn/anyconnect/internal/cstp"
	"toride/sslvpn/internal/bufpool"
	"toride/sslvpn/internal/udpsrc"
)

// Where a packet sits in its pool buffer (bufpool.Buf): after headroom, so it is framed in place, in front of
// it a CSTP header (8 bytes) or the AnyConnect DTLS header (1 byte) under a DTLS record header and explicit
// nonce (21 bytes); after it, tailroom for a DTLS record's authentication tag.
const (
	headroom   = 32
	tailroom   = 16
	maxPayload = bufpool.Size - headroom - tailroom
)

// transport is one TLS connection carrying a session's CSTP frames. Its reader is the ServeConn goroutine
// that accepted the CONNECT; its writer the session's writer goroutine.
type transport struct {
	conn   net.Conn // the TCP connection: closing it ends the reader
	tls    *tls.Conn
	cork   *corkConn
	br     *bufio.Reader
	remote netip.AddrPort

	failMu  sync.Mutex
	failErr error
}

func newTransport(cn *conn, cork *corkConn) *transport {
	return &transport{conn: cork.Conn, tls: cn.tls, cork: cork, br: cn.br, remote: cn.remote}
}

// fail records why the transport is being given up and closes it; the first reason wins.
func (t *transport) fail(err error) {
	t.failMu.Lock()
	if t.failErr == nil {
		t.failErr = err
	}
	t.failMu.Unlock()
	t.conn.Close()
}

func (t *transport) failure() error {
	t.failMu.Lock()
	defer t.failMu.Unlock()
	return t.failErr
}

// ctrlFrame is a control frame for the writer to send over CSTP. done, if set, is closed once it was written
// (or given up).
type ctrlFrame struct {
	typ  cstp.Type
	buf  *bufpool.Buf
	done chan struct{}
}

// session is one client's tunnel; it implements Session.
//
// Goroutines: run (the control loop: timers, end) owns the session and is owned by the Server; it starts the
// writer and waits for it. CSTP readers are ServeConn goroutines, counted in readers; DTLS peers run in
// goroutines counted in wg. run calls Backend.Disconnected only after all of them have stopped.
//
// Locking: mu guards the lifecycle fields (end reason, detach time, DTLS application id and key, the peer in
// handshake); the current transports are atomic pointers read on every packet. Lock order: session.mu, then
// Server.mu, then dtlsState.mu.
type session struct {
	srv            *Server
	id             uint64
	ck             *cookie
	ident          *Identity
	group          *group
	grant          *Grant
	started        time.Time
	sessionTimeout time.Duration

	ctx    context.Context // ends when the session shuts down: DTLS handshakes give up
	cancel context.CancelFunc

	out  chan *bufpool.Buf // packets to the client, bounded
	ctrl chan ctrlFrame    // control frames to the client over CSTP, bounded
	wake chan struct{}     // capacity 1: the control loop has something to look at
	stop chan struct{}     // closed at shutdown: the writer returns
	done chan struct{}     // closed after Disconnected

	cstp atomic.Pointer[transport]
	dtls atomic.Pointer[dtlsPeer]
	sent dtlsBatch // the writer's

	mu          sync.Mutex
	endErr      error
	endMsg      string
	ending      bool // shutdown has begun: no attach, no DTLS
	remote      netip.AddrPort
	detachedAt  time.Time
	appID       [appIDLen]byte
	hasAppID    bool
	psk         []byte
	handshaking *dtlsPeer

	readers sync.WaitGroup // CSTP readers (ServeConn goroutines) attached to this session
	wg      sync.WaitGroup // the writer and DTLS goroutines

	lastCSTPRx, lastDTLSRx, lastData atomic.Int64 // UnixNano
	lastCSTPDPD, lastDTLSDPD         int64        // control loop only

	stats sessionCounters
}

type sessionCounters struct {
	packetsIn, bytesIn, packetsOut, bytesOut atomic.Uint64
	dtlsIn, dtlsOut, dropped, unknown        atomic.Uint64
	reconnects, dtlsHandshakes               atomic.Uint64
	dtlsCipher                               atomic.Pointer[string]
}

func (s *Server) newSession(ck *cookie, cn *conn) *session {
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	s.mu.Unlock()
	now := s.now()
	ss := &session{srv: s, id: id, ck: ck, ident: ck.ident, group: ck.group, started: now, sessionTimeout: s.cfg.SessionTimeout,
		out: make(chan *bufpool.Buf, s.cfg.QueueLen), ctrl: make(chan ctrlFrame, 16), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), remote: cn.remote, detachedAt: now}
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	n := now.UnixNano()
	ss.lastCSTPRx.Store(n)
	ss.lastData.Store(n)
	return ss
}

// setGrant validates the backend's grant and keeps it.
func (ss *session) setGrant(g *Grant) error {
	switch {
	case g == nil:
		return fmt.Errorf("%w: Connect returned no grant", ErrConfig)
	case g.Uplink == nil:
		return fmt.Errorf("%w: grant without an uplink", ErrConfig)
	case !g.Address.IsValid() || !g.Address.Addr().Is4() || g.Address.Bits() < 1:
		return fmt.Errorf("%w: grant needs an IPv4 address with its prefix length (got %v)", ErrConfig, g.Address)
	}
	ss.grant = g
	if g.SessionTimeout > 0 {
		ss.sessionTimeout = g.SessionTimeout
	}
	return nil
}

// ID implements Session.
func (ss *session) ID() uint64 { return ss.id }

// Group implements Session.
func (ss *session) Group() string { return ss.group.Name }

// Identity implements Session.
func (ss *session) Identity() *Identity { return ss.ident }

// Remote implements Session.
func (ss *session) Remote() netip.AddrPort {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.remote
}

// DTLS implements Session.
func (ss *session) DTLS() bool { return ss.dtls.Load() != nil }

// Stats implements Session.
func (ss *session) Stats() SessionStats {
	c := &ss.stats
	st := SessionStats{PacketsIn: c.packetsIn.Load(), BytesIn: c.bytesIn.Load(), PacketsOut: c.packetsOut.Load(),
		BytesOut: c.bytesOut.Load(), DTLSPacketsIn: c.dtlsIn.Load(), DTLSPacketsOut: c.dtlsOut.Load(),
		Dropped: c.dropped.Load(), Reconnects: c.reconnects.Load(), DTLSHandshakes: c.dtlsHandshakes.Load(),
		DTLSUp: ss.dtls.Load() != nil}
	if p := c.dtlsCipher.Load(); p != nil {
		st.DTLSCipher = *p
	}
	return st
}

// SendPacket implements Session.
func (ss *session) SendPacket(pkt []byte) bool {
	if len(pkt) == 0 || len(pkt) > maxPayload || (ss.cstp.Load() == nil && ss.dtls.Load() == nil) {
		ss.stats.dropped.Add(1)
		return false
	}
	b := ss.srv.pool.Get()
	if b == nil {
		ss.stats.dropped.Add(1)
		return false
	}
	b.Off, b.N = headroom, copy(b.Data[headroom:], pkt)
	select {
	case ss.out <- b:
		return true
	default:
		ss.srv.pool.Put(b)
		ss.stats.dropped.Add(1)
		return false
	}
}

// Close implements Session: the cookie is invalid before Close returns.
func (ss *session) Close(reason string) {
	ss.end(fmt.Errorf("%w: %s", ErrKilled, reason), reason)
}

// end asks the control loop to end the session for why, telling the client msg. The cookie is dropped at once,
// so no reconnect can race the shutdown.
func (ss *session) end(why error, msg string) {
	ss.mu.Lock()
	if ss.endErr == nil {
		ss.endErr, ss.endMsg = why, msg
	}
	ss.mu.Unlock()
	ss.srv.unbind(ss)
	ss.poke()
}

// endMessage is what the client is told about the session's end, once it is ending.
func (ss *session) endMessage() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.endErr == nil {
		return ""
	}
	if ss.endMsg != "" {
		return ss.endMsg
	}
	return ss.endErr.Error()
}

func (ss *session) poke() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

func (ss *session) event(ev Event) {
	if o := ss.srv.evObs; o != nil {
		o.SessionEvent(ss, ev)
	}
}

// unbind makes a session unreachable: its cookie and its DTLS application id are gone.
func (s *Server) unbind(ss *session) {
	ss.mu.Lock()
	id, has := ss.appID, ss.hasAppID
	ss.hasAppID = false
	ss.mu.Unlock()
	s.mu.Lock()
	if s.cookies[ss.ck.hash] == ss.ck {
		delete(s.cookies, ss.ck.hash)
	}
	if has && s.byAppID[id] == ss {
		delete(s.byAppID, id)
	}
	s.mu.Unlock()
}

// attach makes t the session's transport, replacing (and closing) the one before: the first CONNECT or a
// reconnect. The DTLS keyed from the previous TLS session ends too; the client starts a new one with the
// application id and key of this CONNECT.
func (ss *session) attach(t *transport, appID [appIDLen]byte, psk []byte, useDTLS bool) error {
	ss.mu.Lock()
	if ss.ending || ss.endErr != nil {
		ss.mu.Unlock()
		return fmt.Errorf("%w: the session ended during CONNECT", ErrClosed)
	}
	old := ss.cstp.Swap(t)
	ss.readers.Add(1)
	ss.remote = t.remote
	ss.detachedAt = time.Time{}
	oldID, hadID := ss.appID, ss.hasAppID
	ss.appID, ss.hasAppID, ss.psk = appID, useDTLS, psk
	hs := ss.handshaking
	ss.handshaking = nil
	ss.lastCSTPRx.Store(ss.srv.now().UnixNano())
	ss.srv.mu.Lock()
	if hadID && ss.srv.byAppID[oldID] == ss {
		delete(ss.srv.byAppID, oldID)
	}
	if useDTLS {
		ss.srv.byAppID[appID] = ss
	}
	ss.srv.mu.Unlock()
	ss.mu.Unlock()
	if old != nil {
		old.fail(fmt.Errorf("%w: replaced by a reconnect from %s", ErrTransport, t.remote))
	}
	if hs != nil {
		hs.close()
	}
	if p := ss.dtls.Swap(nil); p != nil {
		p.close()
		ss.event(Event{Kind: EventDTLSDown, Err: fmt.Errorf("%w: the client reconnected", ErrTransport)})
	}
	ss.poke()
	return nil
}

// transportEnded is called by the reader of t when it stops. A client that said goodbye ends the session;
// a lost connection leaves it waiting for a reconnect.
func (ss *session) transportEnded(t *transport, err error) {
	t.fail(err)
	ss.mu.Lock()
	current := ss.cstp.CompareAndSwap(t, nil)
	if current {
		ss.detachedAt = ss.srv.now()
	}
	ending := ss.ending
	ss.mu.Unlock()
	ss.readers.Done()
	switch {
	case errors.Is(err, ErrClientExit) || errors.Is(err, ErrProtocol):
		if current || ss.cstp.Load() == nil {
			ss.end(err, "")
		}
	case current && !ending:
		ss.event(Event{Kind: EventDetached, Err: err})
	}
	ss.poke()
}

// flushUplink writes what the uplink holds of the session's packets (see Uplink.Flush).
func (ss *session) flushUplink() {
	if ss.grant != nil {
		ss.grant.Uplink.Flush()
	}
}

// fromClient hands a packet from the client to the uplink.
func (ss *session) fromClient(p []byte, viaDTLS bool, now int64) {
	// Data over TLS while DTLS is up means the client gave up on DTLS (its DPD found UDP blocked): follow it
	// at once, before the packet's answer is queued, rather than send into a black hole until our own DPD
	// notices. The grace covers packets the client queued on TLS while the handshake finished.
	if !viaDTLS {
		if peer := ss.dtls.Load(); peer != nil && now-ss.lastDTLSRx.Load() > int64(time.Second) {
			ss.dtlsDown(peer, fmt.Errorf("%w: the client sends over TLS again", ErrTransport))
		}
	}
	if err := ss.grant.Uplink.WritePacket(p); err != nil {
		ss.stats.dropped.Add(1)
		return
	}
	ss.stats.packetsIn.Add(1)
	ss.stats.bytesIn.Add(uint64(len(p)))
	ss.lastData.Store(now)
	if viaDTLS {
		ss.stats.dtlsIn.Add(1)
	}
}

// queueCtrl queues a control frame for the writer; a full queue drops it (the client retries DPD).
func (ss *session) queueCtrl(typ cstp.Type, payload []byte) bool {
	b := ss.srv.pool.Get()
	if b == nil {
		return false
	}
	b.Off, b.N = headroom, copy(b.Data[headroom:], payload)
	select {
	case ss.ctrl <- ctrlFrame{typ: typ, buf: b}:
		return true
	default:
		ss.srv.pool.Put(b)
		return false
	}
}

// writer sends queued packets and control frames: data over DTLS when it is up, else over CSTP; control
// frames over CSTP. It writes a burst corked and flushes once.
func (ss *session) writer() {
	defer ss.wg.Done()
	for {
		var first any
		select {
		case <-ss.stop:
			return
		case f := <-ss.ctrl:
			first = f
		case b := <-ss.out:
			first = b
		}
		t := ss.cstp.Load()
		if t != nil {
			_ = t.conn.SetWriteDeadline(ss.srv.now().Add(ss.srv.cfg.HandshakeTimeout))
			t.cork.Cork()
		}
		ss.writeOne(first)
	burst:
		for i := 0; i < 128; i++ {
			select {
			case f := <-ss.ctrl:
				ss.writeOne(f)
			case b := <-ss.out:
				ss.writeOne(b)
			default:
				break burst
			}
		}
		ss.flushDTLS()
		if t != nil {
			if err := t.cork.Flush(); err != nil {
				t.fail(fmt.Errorf("%w: %v", ErrTransport, err))
			}
			_ = t.conn.SetWriteDeadline(time.Time{})
		}
	}
}

func (ss *session) writeOne(item any) {
	switch v := item.(type) {
	case *bufpool.Buf:
		ss.writeData(v)
	case ctrlFrame:
		if t := ss.cstp.Load(); t != nil {
			frame := v.buf.Data[headroom-cstp.HeaderLen : headroom+v.buf.N]
			_ = cstp.PutHeader(frame, v.typ, v.buf.N)
			if _, err := t.tls.Write(frame); err != nil {
				t.fail(fmt.Errorf("%w: %v", ErrTransport, err))
			}
		}
		ss.srv.pool.Put(v.buf)
		if v.done != nil {
			if t := ss.cstp.Load(); t != nil {
				_ = t.cork.Flush()
			}
			close(v.done)
		}
	}
}

// writeData sends one packet, framed in place in its buffer's headroom: over DTLS when it is up (on the fast
// path, sealed now and sent with the rest of the burst by flushDTLS, which then owns b), else over CSTP.
func (ss *session) writeData(b *bufpool.Buf) {
	if p := ss.dtls.Load(); p != nil {
		rec, err := p.seal(b, cstp.Data)
		switch {
		case err == nil && rec != nil:
			ss.batchDTLS(p, b, rec)
			return
		case err == nil: // pion's path: sent
			ss.stats.packetsOut.Add(1)
			ss.stats.bytesOut.Add(uint64(b.N))
			ss.stats.dtlsOut.Add(1)
			ss.srv.pool.Put(b)
			return
		case errors.Is(err, errNotReady):
		default:
			ss.dtlsDown(p, fmt.Errorf("%w: DTLS write: %v", ErrTransport, err))
		}
	}
	ss.writeCSTP(b)
}

// dtlsBatchLen is the most DTLS records the writer sends in one write (sendmmsg).
const dtlsBatchLen = 32

// dtlsBatch is the writer's DTLS records sealed and not yet sent, in the buffers it holds.
type dtlsBatch struct {
	peer  *dtlsPeer
	held  [dtlsBatchLen]*bufpool.Buf
	recs  [dtlsBatchLen][]byte
	n     int
	batch udpsrc.Batch
}

// batchDTLS adds a record sealed in b for p to the batch, which owns b now; a full batch, or one for another
// peer, is sent first. Writer only.
func (ss *session) batchDTLS(p *dtlsPeer, b *bufpool.Buf, rec []byte) {
	if ss.sent.n > 0 && (ss.sent.peer != p || ss.sent.n == dtlsBatchLen) {
		ss.flushDTLS()
	}
	ss.sent.peer = p
	ss.sent.held[ss.sent.n], ss.sent.recs[ss.sent.n] = b, rec
	ss.sent.n++
}

// flushDTLS sends the batched records in one write and returns their buffers to the pool. If the socket
// refuses, DTLS is down (the next packets go over CSTP) and what was not sent is dropped: sealed in place, it is
// no longer the packet. Writer only.
func (ss *session) flushDTLS() {
	d := &ss.sent
	if d.n == 0 {
		return
	}
	sent, err := d.peer.vc.writeBatch(&d.batch, d.recs[:d.n])
	for i := range d.n {
		b := d.held[i]
		d.held[i], d.recs[i] = nil, nil
		switch {
		case i < sent:
			ss.stats.packetsOut.Add(1)
			ss.stats.bytesOut.Add(uint64(b.N))
			ss.stats.dtlsOut.Add(1)
		case i == sent:
			ss.dtlsDown(d.peer, fmt.Errorf("%w: DTLS write: %v", ErrTransport, err))
			fallthrough
		default:
			ss.stats.dropped.Add(1)
		}
		ss.srv.pool.Put(b)
	}
	d.n, d.peer = 0, nil
}

// writeCSTP sends one packet over CSTP, framed in place in its buffer's headroom, and returns the buffer to the
// pool.
func (ss *session) writeCSTP(b *bufpool.Buf) {
	defer ss.srv.pool.Put(b)
	n := b.N
	t := ss.cstp.Load()
	if t == nil {
		ss.stats.dropped.Add(1)
		return
	}
	frame := b.Data[headroom-cstp.HeaderLen : headroom+n]
	_ = cstp.PutHeader(frame, cstp.Data, n)
	if _, err := t.tls.Write(frame); err != nil {
		t.fail(fmt.Errorf("%w: %v", ErrTransport, err))
		ss.stats.dropped.Add(1)
		return
	}
	ss.stats.packetsOut.Add(1)
	ss.stats.bytesOut.Add(uint64(n))
}

// tick is how often the control loop looks at the timers.
func (ss *session) tick() time.Duration {
	return min(max(ss.srv.cfg.DPD/4, 50*time.Millisecond), time.Second)
}

// run is the session's control loop: dead-peer detection, timeouts, the end.
func (ss *session) run() {
	defer ss.srv.wg.Done()
	ss.wg.Add(1)
	go ss.writer()
	tick := time.NewTicker(ss.tick())
	defer tick.Stop()
	for {
		select {
		case <-ss.wake:
		case <-tick.C:
		}
		if why, msg := ss.check(); why != nil {
			ss.shutdown(why, msg)
			return
		}
	}
}

// check looks at the timers and returns why the session must end, if it must.
func (ss *session) check() (error, string) {
	ss.mu.Lock()
	why, msg, detachedAt := ss.endErr, ss.endMsg, ss.detachedAt
	ss.mu.Unlock()
	if why != nil {
		return why, msg
	}
	cfg := &ss.srv.cfg
	now := ss.srv.now()
	n := now.UnixNano()
	dpd := int64(cfg.DPD)
	if t := ss.cstp.Load(); t != nil {
		switch idle := n - ss.lastCSTPRx.Load(); {
		case idle > 3*dpd:
			t.fail(fmt.Errorf("%w: nothing from %s for %v", ErrDPDTimeout, t.remote, time.Duration(idle).Round(time.Second)))
		case idle > dpd && n-ss.lastCSTPDPD > dpd:
			ss.lastCSTPDPD = n
			ss.queueCtrl(cstp.DPDRequest, nil)
		}
	} else if !detachedAt.IsZero() && now.Sub(detachedAt) > cfg.CookieLifetime {
		return fmt.Errorf("%w: waited %v", ErrReconnectTimeout, cfg.CookieLifetime), ""
	}
	if p := ss.dtls.Load(); p != nil {
		switch idle := n - ss.lastDTLSRx.Load(); {
		case idle > 3*dpd:
			ss.dtlsDown(p, fmt.Errorf("%w: nothing over DTLS for %v", ErrDPDTimeout, time.Duration(idle).Round(time.Second)))
		case idle > dpd && n-ss.lastDTLSDPD > dpd:
			ss.lastDTLSDPD = n
			p.sendControl(cstp.DPDRequest, nil)
		}
	}
	if cfg.IdleTimeout > 0 && n-ss.lastData.Load() > int64(cfg.IdleTimeout) {
		return fmt.Errorf("%w: no data for %v", ErrIdleTimeout, cfg.IdleTimeout), "idle timeout"
	}
	if ss.sessionTimeout > 0 && now.Sub(ss.started) > ss.sessionTimeout {
		return fmt.Errorf("%w: %v", ErrSessionTimeout, ss.sessionTimeout), "session time limit reached"
	}
	return nil, ""
}

// shutdown ends the session: the cookie goes, the client hears why, every goroutine stops, the backend hears
// last.
func (ss *session) shutdown(why error, msg string) {
	ss.mu.Lock()
	ss.ending = true
	if ss.endErr == nil {
		ss.endErr = why
	}
	hs := ss.handshaking
	ss.handshaking = nil
	ss.mu.Unlock()
	ss.srv.unbind(ss)
	ss.cancel()
	// Tell the client, unless it left by itself or its connection is gone. openconnect prints the reason and
	// exits rather than reconnect.
	if t := ss.cstp.Load(); t != nil && !errors.Is(why, ErrClientExit) && !errors.Is(why, ErrProtocol) {
		if msg == "" {
			msg = why.Error()
		}
		payload := append([]byte{cstp.DisconnectCode}, msg...)
		if b := ss.srv.pool.Get(); b != nil {
			b.Off, b.N = headroom, copy(b.Data[headroom:], payload)
			done := make(chan struct{})
			select {
			case ss.ctrl <- ctrlFrame{typ: cstp.Disconnect, buf: b, done: done}:
				select {
				case <-done:
				case <-time.After(time.Second):
				}
			default:
				ss.srv.pool.Put(b)
			}
		}
	}
	close(ss.stop)
	if t := ss.cstp.Swap(nil); t != nil {
		t.fail(why)
	}
	if p := ss.dtls.Swap(nil); p != nil {
		p.close()
	}
	if hs != nil {
		hs.close()
	}
	ss.readers.Wait()
	ss.wg.Wait()
	for {
		select {
		case b := <-ss.out:
			ss.srv.pool.Put(b)
			continue
		case f := <-ss.ctrl:
			ss.srv.pool.Put(f.buf)
			continue
		default:
		}
		break
	}
	ss.srv.mu.Lock()
	delete(ss.srv.sessions, ss.id)
	ss.srv.mu.Unlock()
	ss.srv.be.Disconnected(ss, why)
	close(ss.done)
}
