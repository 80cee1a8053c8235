package openvpn

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"toride/sslvpn/internal/bufpool"
	"toride/sslvpn/internal/flushset"
	"toride/sslvpn/internal/udpsrc"
	"toride/sslvpn/openvpn/internal/wire"
)

// maxWirePacket is the largest OpenVPN packet accepted from the network.
const maxWirePacket = bufpool.Size

// readBatch is the most datagrams the UDP reader takes in one system call (recvmmsg): what is queued when it
// reads, so a busy socket is read in batches and an idle one a datagram at a time.
const readBatch = 32

// Server is the OpenVPN protocol engine for any number of TCP connections and UDP sockets. It is safe for
// concurrent use. The zero value is not usable; use NewServer.
type Server struct {
	cfg      *resolved
	backend  Backend
	observer HandshakeObserver
	pool     *bufpool.Pool
	epoch    time.Time

	first      *firstPackets   // checks before a client has a session
	handshakes *handshakeTable // sessions not connected yet

	nextSessionID atomic.Uint64
	nextPeerID    atomic.Uint32

	shutdown     chan struct{}
	shutdownCtx  context.Context // done when shutdown is closed
	shutdownOnce sync.Once
	cancelCtx    context.CancelFunc
	serving      sync.WaitGroup
	mu           sync.Mutex // guards closed against serving.Add
	closed       bool

	stats serverCounters
}

type serverCounters struct {
	handshakes, failedHandshakes, malformed, controlDropped, busy, resetAnswers, replayed, floated atomic.Uint64
	active                                                                                         atomic.Int64
}

// ServerStats are a server's counters.
type ServerStats struct {
	ActiveSessions    int64  `json:"active_sessions"`    // sessions admitted by Connect and not yet disconnected
	Handshakes        uint64 `json:"handshakes"`         // sessions started
	PendingHandshakes int    `json:"pending_handshakes"` // sessions started and not connected yet
	FailedHandshakes  uint64 `json:"failed_handshakes"`  // sessions that ended before Connect succeeded
	Malformed         uint64 `json:"malformed"`          // packets dropped as malformed or unauthenticated
	Replayed          uint64 `json:"replayed"`           // tls-crypt first packets replayed or outside the time window
	ResetAnswers      uint64 `json:"reset_answers"`      // UDP hard resets answered statelessly
	ControlDropped    uint64 `json:"control_dropped"`    // control packets dropped on full queues (the peer retransmits)
	Floated           uint64 `json:"floated"`            // UDP sessions moved to their client's new address
	Busy              uint64 `json:"busy"`               // handshakes ended to make room for newer ones (handshakeTable)
	BuffersInUse      int    `json:"buffers_in_use"`
}

// NewServer validates cfg and returns a server that admits clients through b.
func NewServer(cfg Config, b Backend) (*Server, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: a Backend is required", ErrConfig)
	}
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: r, backend: b, pool: bufpool.New(r.MaxBuffers), epoch: time.Now(), shutdown: make(chan struct{}),
		first: newFirstPackets(r.tlsCrypt), handshakes: newHandshakeTable(r.MaxHandshakes, r.MaxHandshakesPerSource)}
	s.shutdownCtx, s.cancelCtx = context.WithCancel(context.Background())
	s.observer, _ = b.(HandshakeObserver)
	return s, nil
}

// Ciphers returns the data-channel ciphers the server accepts, as resolved from the configuration.
func (s *Server) Ciphers() []string { return append([]string(nil), s.cfg.DataCiphers...) }

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		ActiveSessions: s.stats.active.Load(), Handshakes: s.stats.handshakes.Load(),
		PendingHandshakes: s.handshakes.len(), FailedHandshakes: s.stats.failedHandshakes.Load(),
		Malformed: s.stats.malformed.Load(), Replayed: s.stats.replayed.Load(), ResetAnswers: s.stats.resetAnswers.Load(),
		ControlDropped: s.stats.controlDropped.Load(), Busy: s.stats.busy.Load(), Floated: s.stats.floated.Load(),
		BuffersInUse: s.pool.Outstanding(),
	}
}

// Close shuts the server down: every session tells its client to reconnect elsewhere or later (RESTART, the
// server side of explicit-exit-notify) and ends, and Close waits until every ServeConn and ServeUDP call has
// returned. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.shutdownOnce.Do(func() {
		close(s.shutdown)
		s.cancelCtx()
	})
	s.serving.Wait()
	return nil
}

func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.serving.Add(1)
	return true
}

// SniffTCP reports whether the first bytes of a TCP stream look like an OpenVPN client's first packet: a 16-bit
// length and P_CONTROL_HARD_RESET_CLIENT_V2 or V3 with key id 0. It needs 3 bytes; a port demultiplexer uses it
// to tell OpenVPN from TLS (whose first byte is 0x16).
func SniffTCP(first []byte) bool {
	if len(first) < 3 {
		return false
	}
	n := int(binary.BigEndian.Uint16(first))
	op, keyID := wire.SplitHeader(first[2])
	return keyID == 0 && (op == wire.ControlHardResetClientV2 || op == wire.ControlHardResetClientV3) &&
		n >= wire.ControlHeaderLen+5 && n <= maxWirePacket
}

// ServeConn runs one OpenVPN client on an accepted TCP connection (its first bytes still to be read; a
// demultiplexer that peeked must hand over a conn that replays them). It takes ownership of c and closes it. It
// returns when the session ends: nil after a shutdown (ctx done or Close), otherwise the reason, wrapping one of
// the package's errors.
//
// A session is made only for a first packet that is a client's hard reset (with tls-crypt: authentic, within
// the time window and not a replay); to keep MaxHandshakes and MaxHandshakesPerSource an older handshake may end
// for it. If c has a method Authenticated(), ServeConn calls it once the client has connected, so that a
// listener bounding the connections awaiting login stops counting this one.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	if !s.enter() {
		c.Close()
		return ErrClosed
	}
	defer s.serving.Done()
	l := &tcpLink{conn: c}
	defer l.close()
	remote := addrPortOf(c.RemoteAddr())
	br := bufio.NewReaderSize(c, 16<<10)
	buf := make([]byte, maxWirePacket)

	// The first packet decides whether this is one of ours at all; bound the wait for it.
	interrupt := func() { c.SetReadDeadline(time.Now()) }
	stop, stopShutdown := context.AfterFunc(ctx, interrupt), context.AfterFunc(s.shutdownCtx, interrupt)
	c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	pkt, err := readTCPPacket(br, buf)
	stop()
	stopShutdown()
	c.SetReadDeadline(time.Time{})
	if err == nil && len(pkt) == 0 {
		err = fmt.Errorf("%w: oversized first packet", ErrProtocol)
	}
	if err != nil {
		if ctx.Err() != nil || s.shutdownCtx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %v", ErrTransport, err)
	}
	op, keyID, sid, _, err := wire.ParseControlHeader(pkt)
	switch {
	case err != nil:
		return fmt.Errorf("%w: first packet: %v", ErrProtocol, err)
	case op == wire.ControlHardResetClientV3:
		return fmt.Errorf("%w: tls-crypt-v2", ErrUnsupported)
	case op != wire.ControlHardResetClientV2 || keyID != 0:
		return fmt.Errorf("%w: first packet is %v, not a client hard reset", ErrProtocol, op)
	}
	// With tls-crypt nobody without the key gets a session, nor anyone replaying a client's first packet.
	if _, err := s.first.open(nil, pkt); err != nil {
		s.countRefused(err)
		return fmt.Errorf("%w: first packet: %v", ErrProtocol, err)
	}
	if !s.first.fresh(pkt) {
		s.stats.replayed.Add(1)
		return errReplayed
	}
	sess, err := newSession(s, TCP, remote, l, sid, s.nextPeerID.Add(1)&0xFFFFFF)
	if err != nil {
		return err
	}
	s.admit(sess)
	sess.start(ctx)
	sess.handleIncoming(pkt)
	for {
		pkt, err := readTCPPacket(br, buf)
		if err != nil {
			sess.linkFailed(err)
			break
		}
		if len(pkt) == 0 {
			s.stats.malformed.Add(1)
			continue
		}
		sess.handleIncoming(pkt)
		if !packetBuffered(br) {
			sess.flushUplink() // the next read may wait: what this one brought goes to the LAN now
		}
	}
	sess.flushUplink()
	sess.wait()
	if errors.Is(sess.reason, ErrShutdown) {
		return nil
	}
	return sess.reason
}

// countRefused counts a first packet that firstPackets.open refused.
func (s *Server) countRefused(err error) {
	if errors.Is(err, errStale) {
		s.stats.replayed.Add(1)
	} else {
		s.stats.malformed.Add(1)
	}
}

// admit enters a new session into the handshake table, and ends the handshakes that make room for it.
func (s *Server) admit(sess *session) {
	for _, v := range s.handshakes.admit(sess) {
		s.stats.busy.Add(1)
		v.requestClose(errEvicted)
	}
}

func readTCPPacket(r *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 {
		return nil, fmt.Errorf("%w: zero-length packet", ErrProtocol)
	}
	if n > len(buf) {
		// Larger than anything we send or accept (a client with a huge tun-mtu): skip it, keep the stream.
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return nil, err
		}
		return buf[:0], nil
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// packetBuffered reports whether r holds a whole framed packet, which readTCPPacket would return without reading
// the connection.
func packetBuffered(r *bufio.Reader) bool {
	if r.Buffered() < 2 {
		return false
	}
	hdr, _ := r.Peek(2)
	return r.Buffered() >= 2+int(binary.BigEndian.Uint16(hdr))
}

// tcpLink is a session's TCP connection. writeFrames is called by the session's writer only.
type tcpLink struct {
	conn net.Conn
	once sync.Once
	bufs net.Buffers // writeFrames' scratch
}

// writeFrames puts each frame's length in front of it and writes them all, in one writev where the connection
// has it (a *net.TCPConn).
func (l *tcpLink) writeFrames(frames [][]byte) error {
	for _, f := range frames {
		n := len(f) - frameHeadroom
		f[0], f[1] = byte(n>>8), byte(n)
	}
	if len(frames) == 1 {
		_, err := l.conn.Write(frames[0])
		return err
	}
	l.bufs = append(l.bufs[:0], frames...)
	_, err := l.bufs.WriteTo(l.conn)
	return err
}

func (l *tcpLink) close() { l.once.Do(func() { l.conn.Close() }) }

// connected tells a listener that counts connections awaiting login (the port demultiplexer) that this one has
// logged in.
func (l *tcpLink) connected() {
	if a, ok := l.conn.(interface{ Authenticated() }); ok {
		a.Authenticated()
	}
}

func (l *tcpLink) addr() net.Addr { return l.conn.RemoteAddr() }

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// udpTable maps clients to sessions; replaced as a whole on change and read lock-free by the socket reader.
type udpTable struct {
	byAddr map[netip.AddrPort]udpPeer
	byPeer map[uint32]*session
}

// udpPeer is what one client address has: an established session and a new one still authenticating (a
// restarted client: the address echoed our cookie, so it is the client's own). The new one replaces the old
// only once it connects.
type udpPeer struct {
	active, pending *session
}

func (t *udpTable) clone() *udpTable {
	n := &udpTable{byAddr: make(map[netip.AddrPort]udpPeer, len(t.byAddr)+1), byPeer: make(map[uint32]*session, len(t.byPeer)+1)}
	for k, v := range t.byAddr {
		n.byAddr[k] = v
	}
	for k, v := range t.byPeer {
		n.byPeer[k] = v
	}
	return n
}

// udpServer serves every client of one UDP socket. Its reader goroutine (the ServeUDP caller) demultiplexes
// packets: data by peer-id (P_DATA_V2) or address, control by address and session id, and decrypts data inline.
type udpServer struct {
	srv  *Server
	conn *udpsrc.Conn // reads with each datagram's local address, answers from it

	mu       sync.Mutex // serializes table changes
	table    atomic.Pointer[udpTable]
	sessions sync.WaitGroup
	closing  atomic.Bool
	// Reader goroutine only:
	cookies *resetCookies
	scratch []byte // plain bodies of first packets
	answer  []byte // stateless answers
}

// ServeUDP serves all OpenVPN clients on one UDP socket until ctx ends or the server is closed; it then tells
// every client to reconnect (RESTART), waits for its sessions to end and returns nil. The caller keeps
// ownership of pc and closes it after ServeUDP returns; ServeUDP uses its read deadline to stop reading.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.serving.Done()
	// Without packet info (not Linux) answers leave from the kernel's choice of address, as before.
	conn, _ := udpsrc.New(pc)
	u := &udpServer{srv: s, conn: conn}
	u.table.Store(&udpTable{byAddr: map[netip.AddrPort]udpPeer{}, byPeer: map[uint32]*session{}})
	u.cookies = newResetCookies(s.cfg.HandshakeTimeout)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// On shutdown the sessions say goodbye while the reader still receives their acks; then reading stops.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-sctx.Done():
		case <-s.shutdown:
		}
		u.mu.Lock()
		u.closing.Store(true)
		u.mu.Unlock()
		u.sessions.Wait() // sessions watch ctx and s.shutdown themselves
		pc.SetReadDeadline(time.Now())
	}()
	reads := udpsrc.NewReads(readBatch, maxWirePacket)
	var batch flushset.Set // the uplinks a batch gave data packets to, flushed at its end
	var err error
	for {
		_, err = u.conn.ReadBatch(reads)
		if err != nil {
			if u.closing.Load() {
				err = nil
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			break
		}
		for _, d := range reads.Datagrams {
			if sess := u.dispatch(sctx, d.B, d.From, d.Local); sess != nil {
				if up := sess.uplink.Load(); up != nil {
					batch.Add(up.u)
				}
			}
		}
		batch.Flush()
		// Longer than anything a client sends.
		s.stats.malformed.Add(reads.Truncated)
	}
	cancel()
	u.mu.Lock()
	u.closing.Store(true)
	u.mu.Unlock()
	if err != nil {
		// The socket failed: end every session now.
		for _, p := range u.table.Load().byAddr {
			for _, sess := range []*session{p.active, p.pending} {
				if sess != nil {
					sess.linkFailed(err)
				}
			}
		}
	}
	<-stopped
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTransport, err)
	}
	return nil
}

// dispatch routes one datagram that arrived at local, and returns the session it gave a data packet to (whose
// uplink the reader flushes), or nil. Reader goroutine only; pkt is only valid during the call.
func (u *udpServer) dispatch(ctx context.Context, pkt []byte, from netip.AddrPort, local udpsrc.Local) *session {
	if len(pkt) == 0 {
		return nil
	}
	t := u.table.Load()
	op, keyID := wire.SplitHeader(pkt[0])
	switch op {
	case wire.DataV2:
		if len(pkt) < wire.DataV2HeaderLen {
			u.srv.stats.malformed.Add(1)
			return nil
		}
		peer := uint32(pkt[1])<<16 | uint32(pkt[2])<<8 | uint32(pkt[3])
		sess := t.byPeer[peer]
		switch {
		case sess == nil:
			u.srv.stats.malformed.Add(1)
		case sess.Remote() == from:
			sess.arrivedAt(local)
			sess.handleData(pkt)
		case sess.handleData(pkt):
			// The client moved (a new address or port, as after a NAT rebinding): its session follows it once
			// an authentic packet came from there, as OpenVPN's float.
			u.float(sess, from, local)
		}
		return sess
	case wire.DataV1:
		if sess := t.byAddr[from].active; sess != nil {
			sess.arrivedAt(local)
			sess.handleData(pkt)
			return sess
		}
		u.srv.stats.malformed.Add(1)
		return nil
	}
	_, _, sid, _, err := wire.ParseControlHeader(pkt)
	if err != nil {
		u.srv.stats.malformed.Add(1)
		return nil
	}
	peer := t.byAddr[from]
	for _, sess := range []*session{peer.pending, peer.active} {
		if sess != nil && sess.remoteSID == sid {
			sess.arrivedAt(local)
			sess.handleIncoming(pkt)
			return nil
		}
	}
	if keyID != 0 || u.closing.Load() {
		u.srv.stats.malformed.Add(1)
		return nil
	}
	switch op {
	case wire.ControlHardResetClientV2:
		u.answerReset(pkt, from, local, sid, time.Now())
	case wire.ControlV1, wire.AckV1:
		if cookie, ok := u.checkEcho(pkt, op, from, sid, time.Now()); ok {
			u.newSession(ctx, pkt, from, local, sid, cookie)
		}
	default:
		u.srv.stats.malformed.Add(1)
	}
	return nil
}

// answerReset answers a client's hard reset without keeping anything: our own hard reset, once, whose session
// id is the cookie the client must echo. With tls-crypt, nobody without the key gets an answer. It leaves from
// local, the address the client sent to.
func (u *udpServer) answerReset(pkt []byte, from netip.AddrPort, local udpsrc.Local, sid wire.SessionID, now time.Time) {
	body, err := u.srv.first.open(u.scratch[:0], pkt)
	if err != nil {
		u.srv.countRefused(err)
		return
	}
	u.scratch = body[:0]
	p := wire.ControlPacket{Opcode: wire.ControlHardResetClientV2}
	if err := p.ParseBody(body); err != nil || p.MessageID != 0 {
		u.srv.stats.malformed.Add(1)
		return
	}
	ans := wire.ControlPacket{Opcode: wire.ControlHardResetServerV2, SessionID: u.cookies.make(from, sid, now)}
	out, err := u.srv.first.answer(u.answer[:0], &ans)
	if err != nil || len(out) > len(pkt) {
		return // never more to an unproven address than it sent
	}
	u.answer = out[:0]
	u.srv.stats.resetAnswers.Add(1)
	_, _ = u.conn.WriteTo(out, from, local)
}

// checkEcho accepts a client's acknowledgement or first control message that echoes a cookie we gave that
// address for that client session id, as OpenVPN 2.6 does: it acknowledges at most our reset and its own (ids
// 0 and 1), and carries at most message id 1. It returns the cookie, the new session's own id.
func (u *udpServer) checkEcho(pkt []byte, op wire.Opcode, from netip.AddrPort, sid wire.SessionID, now time.Time) (wire.SessionID, bool) {
	body, err := u.srv.first.open(u.scratch[:0], pkt)
	if err != nil {
		u.srv.countRefused(err)
		return wire.SessionID{}, false
	}
	u.scratch = body[:0]
	p := wire.ControlPacket{Opcode: op}
	ok := p.ParseBody(body) == nil && p.NumAcks > 0 && p.MessageID <= 1 &&
		u.cookies.valid(p.RemoteSessionID, from, sid, now)
	for _, id := range p.AckList() {
		ok = ok && id <= 1
	}
	if !ok {
		u.srv.stats.malformed.Add(1)
		return wire.SessionID{}, false
	}
	if !u.srv.first.fresh(pkt) {
		u.srv.stats.replayed.Add(1)
		return wire.SessionID{}, false
	}
	return p.RemoteSessionID, true
}

// newSession starts a session for a client that echoed our cookie: its hard reset and ours count as exchanged,
// and the session's id is the cookie. If the address already has one authenticating, that one is dropped; an
// established one stays until the new one connects.
func (u *udpServer) newSession(ctx context.Context, pkt []byte, from netip.AddrPort, local udpsrc.Local, sid, cookie wire.SessionID) {
	u.mu.Lock()
	if u.closing.Load() {
		u.mu.Unlock()
		return
	}
	t := u.table.Load().clone()
	peerID := u.srv.nextPeerID.Add(1) & 0xFFFFFF
	for t.byPeer[peerID] != nil || peerID == wire.NoPeerID {
		peerID = u.srv.nextPeerID.Add(1) & 0xFFFFFF
	}
	l := &udpLink{u: u}
	l.path.Store(&udpPath{to: from, local: local})
	sess, err := newSession(u.srv, UDP, from, l, sid, peerID)
	if err != nil {
		u.mu.Unlock()
		return
	}
	sess.resumeAfterCookie(cookie)
	u.srv.admit(sess)
	l.sess = sess
	peer := t.byAddr[from]
	old := peer.pending
	peer.pending = sess
	t.byAddr[from] = peer
	t.byPeer[peerID] = sess
	u.table.Store(t)
	u.sessions.Add(1)
	u.mu.Unlock()
	if old != nil {
		old.requestClose(ErrReplaced)
	}

	sess.start(ctx)
	go func() {
		// Owner of the session's place in the table: it becomes the address's active session once connected.
		defer u.sessions.Done()
		select {
		case <-sess.connectedCh:
			u.promote(sess)
		case <-sess.finished:
		}
		sess.wait()
	}()
	sess.handleIncoming(pkt)
}

// promote makes a newly connected session the address's active one, ending the previous.
func (u *udpServer) promote(sess *session) {
	u.mu.Lock()
	t := u.table.Load()
	peer := t.byAddr[sess.Remote()]
	if peer.pending != sess {
		u.mu.Unlock()
		return
	}
	t = t.clone()
	old := peer.active
	t.byAddr[sess.Remote()] = udpPeer{active: sess}
	u.table.Store(t)
	u.mu.Unlock()
	if old != nil {
		old.requestClose(ErrReplaced)
	}
}

// float moves an established session to the client's new address from, answered from local. An address
// that has a session of its own, or a session still authenticating, does not move. Reader goroutine only.
func (u *udpServer) float(sess *session, from netip.AddrPort, local udpsrc.Local) {
	l, ok := sess.link.(*udpLink)
	if !ok {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.table.Load()
	old := sess.Remote()
	peer := t.byAddr[old]
	if u.closing.Load() || peer.active != sess || t.byAddr[from] != (udpPeer{}) {
		return
	}
	t = t.clone()
	if peer.pending != nil {
		t.byAddr[old] = udpPeer{pending: peer.pending}
	} else {
		delete(t.byAddr, old)
	}
	t.byAddr[from] = udpPeer{active: sess}
	sess.remote.Store(&from)
	l.path.Store(&udpPath{to: from, local: local})
	u.table.Store(t)
	u.srv.stats.floated.Add(1)
}

func (u *udpServer) remove(sess *session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.table.Load()
	remote := sess.Remote()
	peer := t.byAddr[remote]
	if peer.active != sess && peer.pending != sess && t.byPeer[sess.peerID] != sess {
		return
	}
	t = t.clone()
	if peer.active == sess {
		peer.active = nil
	}
	if peer.pending == sess {
		peer.pending = nil
	}
	if peer.active == nil && peer.pending == nil {
		delete(t.byAddr, remote)
	} else {
		t.byAddr[remote] = peer
	}
	if t.byPeer[sess.peerID] == sess {
		delete(t.byPeer, sess.peerID)
	}
	u.table.Store(t)
}

// udpLink is one client's view of the shared socket. Its answers go to the client's address and leave from
// the local address the client's packets last arrived at, which the socket reader keeps up to date.
type udpLink struct {
	u     *udpServer
	path  atomic.Pointer[udpPath] // replaced (rarely) by the socket reader, read by the writer
	sess  *session
	once  sync.Once
	batch udpsrc.Batch // the writer's
}

// udpPath is where a client's answers go and where they leave from.
type udpPath struct {
	to    netip.AddrPort
	local udpsrc.Local
}

// arrivedAt notes the local end of a packet from the client. Socket reader only.
func (l *udpLink) arrivedAt(local udpsrc.Local) {
	if p := l.path.Load(); p.local != local {
		n := new(udpPath) // here, not &udpPath{…}: that would move every packet's local to the heap
		*n = udpPath{to: p.to, local: local}
		l.path.Store(n)
	}
}

// writeFrames sends a datagram of each frame, a batch in one system call (sendmmsg), each from the local address
// the client's packets arrive at. Errors are not fatal for UDP (a full socket buffer loses packets, as the network
// may): what was not sent is counted as dropped; a dead socket ends ServeUDP instead.
func (l *udpLink) writeFrames(frames [][]byte) error {
	p := l.path.Load()
	for i, f := range frames {
		frames[i] = f[frameHeadroom:]
	}
	if sent, _ := l.u.conn.WriteBatch(&l.batch, frames, p.to, p.local); sent < len(frames) {
		l.sess.counters.dropped.Add(uint64(len(frames) - sent))
	}
	return nil
}

func (l *udpLink) close() { l.once.Do(func() { l.u.remove(l.sess) }) }

func (l *udpLink) connected() {}

func (l *udpLink) addr() net.Addr { return net.UDPAddrFromAddrPort(l.path.Load().to) }

// arrivedAt tells a UDP session's link where the client's latest packet arrived, so answers leave from there.
func (s *session) arrivedAt(local udpsrc.Local) {
	if l, ok := s.link.(*udpLink); ok {
		l.arrivedAt(local)
	}
}
