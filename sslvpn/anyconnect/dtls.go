package anyconnect

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"

	"toride/sslvpn/anyconnect/internal/cstp"
	"toride/sslvpn/anyconnect/internal/dtlsid"
	"toride/sslvpn/anyconnect/internal/dtlsrec"
	"toride/sslvpn/anyconnect/internal/pskgcm"
	"toride/sslvpn/internal/bufpool"
	"toride/sslvpn/internal/flushset"
	"toride/sslvpn/internal/udpsrc"
)

// The DTLS side: one UDP socket for every client.
//
//	ServeDTLS (one goroutine per socket) ── datagram ──► peer by source address (atomic copy-on-write map)
//	   known address, application data, fast path up ──► opened in place (internal/dtlsrec) ──► Uplink
//	   known address, anything else ──► copy into a pooled buffer ──► the peer's bounded queue (full: drop, count)
//	   unknown address, ClientHello ──► application id (session_id field) ──► session ──► new peer, goroutine:
//	        pion DTLS server over the peer's packetConn, PSK from the session's TLS exporter ──► handshake
//	        ──► reader: conn.Read ──► Uplink / DPD answered in place
//	   anything else ──► dropped, counted
//
// Once pion has finished the handshake, data records bypass it: the negotiated keys go to internal/dtlsrec,
// which opens records in the socket reader's buffer and seals them in the session buffer's headroom, without
// allocating (pion allocates and starts goroutines per record). Sending switches over only after the first
// record from the client has opened, so the client surely has our Finished and pion never has to resend it.
// Handshake retransmissions and alerts still go to pion.
//
// A peer belongs to one session (its goroutine is in the session's wait group); the session keeps at most one
// established peer and one in handshake. A new ClientHello from an established peer's address starts a new
// handshake (the client restarted DTLS). Replies go out through the shared socket, from the local address the
// peer's latest datagram arrived at (internal/udpsrc), so a client that dialed one of several addresses of the
// box hears from that one.

// dtlsState is the server's UDP side.
type dtlsState struct {
	mu         sync.Mutex
	pc         net.PacketConn // the socket being served, nil when none
	peers      atomic.Pointer[map[netip.AddrPort]*dtlsPeer]
	handshakes int
}

func (d *dtlsState) init() {
	m := map[netip.AddrPort]*dtlsPeer{}
	d.peers.Store(&m)
}

// publish maps addr to p (copy-on-write), replacing any peer there.
func (d *dtlsState) publish(addr netip.AddrPort, p *dtlsPeer) {
	old := *d.peers.Load()
	m := make(map[netip.AddrPort]*dtlsPeer, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[addr] = p
	d.peers.Store(&m)
}

// remove unmaps p's address if it still maps to p. d.mu must be held.
func (d *dtlsState) removeLocked(p *dtlsPeer) {
	old := *d.peers.Load()
	if old[p.remote] != p {
		return
	}
	m := make(map[netip.AddrPort]*dtlsPeer, len(old))
	for k, v := range old {
		if v != p {
			m[k] = v
		}
	}
	d.peers.Store(&m)
}

// closeAll ends every peer (the socket is no longer served).
func (d *dtlsState) closeAll() {
	d.mu.Lock()
	peers := *d.peers.Load()
	d.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
}

// ServeDTLS serves the UDP socket pc (the same port number as TCP, 443 by default) until ctx ends, the server
// is closed or pc fails. One socket serves every client; a second concurrent ServeDTLS is refused. It does not
// close pc (the caller does, after ServeDTLS returns); it stops reading by setting pc's read deadline. DTLS
// connections of the socket end when it returns and their sessions go on over TLS.
func (s *Server) ServeDTLS(ctx context.Context, pc net.PacketConn) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.dtls.mu.Lock()
	if s.dtls.pc != nil {
		s.dtls.mu.Unlock()
		return fmt.Errorf("%w: a UDP socket is already being served", ErrConfig)
	}
	s.dtls.pc = pc
	s.dtls.mu.Unlock()
	defer func() {
		s.dtls.mu.Lock()
		s.dtls.pc = nil
		s.dtls.mu.Unlock()
		s.dtls.closeAll()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopServer := context.AfterFunc(s.ctx, cancel)
	defer stopServer()
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	// Without packet info (not Linux) answers leave from the kernel's choice of address.
	conn, _ := udpsrc.New(pc)
	reads := udpsrc.NewReads(dtlsReadBatch, dtlsMaxDatagram)
	var batch flushset.Set // the uplinks a batch gave data packets to, flushed at its end
	for {
		if _, err := conn.ReadBatch(reads); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isTimeout(err) {
				continue
			}
			return fmt.Errorf("%w: UDP socket: %v", ErrTransport, err)
		}
		for _, d := range reads.Datagrams {
			if ss := s.datagram(conn, d.B, d.From, d.Local); ss != nil && ss.grant != nil {
				batch.Add(ss.grant.Uplink)
			}
		}
		batch.Flush()
		s.st.dtlsBadRecords.Add(reads.Truncated)
	}
}

// The DTLS reader takes up to dtlsReadBatch datagrams in one system call (recvmmsg), what is queued when it
// reads; a datagram holds at most one full record (2^14 bytes of plaintext and its overhead).
const (
	dtlsReadBatch   = 32
	dtlsMaxDatagram = 1<<14 + 2048
)

// datagram routes one datagram that arrived at local, and returns the session whose records it opened on the fast
// path (whose uplink the reader flushes), or nil.
func (s *Server) datagram(conn *udpsrc.Conn, b []byte, from netip.AddrPort, local udpsrc.Local) *session {
	hello := dtlsid.IsClientHello(b)
	if p := (*s.dtls.peers.Load())[from]; p != nil && !(hello && p.established.Load()) {
		p.vc.arrivedAt(local)
		if fc := p.fast.Load(); fc != nil && dtlsrec.IsApplicationData(b, fc.Epoch()) {
			p.receiveFast(fc, b)
			return p.sess
		}
		if !p.vc.deliver(b) {
			s.st.dtlsQueueFull.Add(1)
		}
		return nil
	}
	if !hello {
		s.st.dtlsNoPeer.Add(1)
		return nil
	}
	if s.tap != nil {
		s.tap(0, "dtls-hello", b)
	}
	id, ok := dtlsid.AppID(b)
	if !ok || len(id) != appIDLen {
		s.st.dtlsUnknown.Add(1)
		return nil
	}
	s.mu.Lock()
	ss := s.byAppID[[appIDLen]byte(id)]
	s.mu.Unlock()
	if ss == nil {
		s.st.dtlsUnknown.Add(1)
		return nil
	}
	s.startDTLS(ss, conn, b, from, local)
	return nil
}

// dtlsPeer is one client address's DTLS connection, in handshake or established.
type dtlsPeer struct {
	srv         *Server
	sess        *session
	remote      netip.AddrPort
	vc          *packetConn
	conn        *dtls.Conn // set before established
	established atomic.Bool
	fast        atomic.Pointer[dtlsrec.Conn] // the record fast path, once the handshake is done
	fastOK      atomic.Bool                  // a record opened on the fast path: sending may use it too
	closeOnce   sync.Once
	counted     bool // holds a handshake slot; guarded by dtlsState.mu
}

// startDTLS begins a handshake for ss with the client at from.
func (s *Server) startDTLS(ss *session, conn *udpsrc.Conn, hello []byte, from netip.AddrPort, local udpsrc.Local) {
	p := &dtlsPeer{srv: s, sess: ss, remote: from, vc: newPacketConn(conn, from, local, s.pool)}
	ss.mu.Lock()
	if ss.ending || ss.endErr != nil || !ss.hasAppID {
		ss.mu.Unlock()
		return
	}
	psk := ss.psk
	prev := ss.handshaking
	s.dtls.mu.Lock()
	if s.dtls.handshakes >= s.cfg.MaxDTLSHandshakes {
		s.dtls.mu.Unlock()
		ss.mu.Unlock()
		s.st.busy.Add(1)
		return
	}
	s.dtls.handshakes++
	p.counted = true
	s.dtls.publish(from, p)
	s.dtls.mu.Unlock()
	ss.handshaking = p
	ss.wg.Add(1)
	ss.mu.Unlock()
	if prev != nil {
		prev.close()
	}
	p.vc.deliver(hello)
	go p.run(psk)
}

// run handshakes and then reads the peer's records until it ends.
func (p *dtlsPeer) run(psk []byte) {
	ss, s := p.sess, p.srv
	defer ss.wg.Done()
	defer p.close()
	raddr := net.UDPAddrFromAddrPort(p.remote)
	var suitesMu sync.Mutex
	var custom []*pskgcm.Suite // the AES-256-GCM instances pion made for this connection
	// pion honours the client's order; openconnect asks for AES-256-GCM first (added by pskgcm), then ChaCha20,
	// then AES-128-GCM. The CCM and CBC suites are for other clients and stay on pion's path.
	builtin := []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CCM, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256}
	withCustom := true
	if s.dtlsSuites != nil {
		builtin, withCustom = nil, false
		for _, id := range s.dtlsSuites {
			if dtls.CipherSuiteID(id) == pskgcm.ID {
				withCustom = true
			} else {
				builtin = append(builtin, dtls.CipherSuiteID(id))
			}
		}
	}
	opts := []dtls.ServerOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return psk, nil }),
		dtls.WithCipherSuites(builtin...),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithFlightInterval(400 * time.Millisecond),
		dtls.WithLoggerFactory(quietLogger{}),
	}
	if withCustom {
		opts = append(opts, dtls.WithCustomCipherSuites(func() []dtls.CipherSuite {
			cs := &pskgcm.Suite{}
			suitesMu.Lock()
			custom = append(custom, cs)
			suitesMu.Unlock()
			return []dtls.CipherSuite{cs}
		}))
	}
	conn, err := dtls.ServerWithOptions(p.vc, raddr, opts...)
	if err != nil {
		s.st.dtlsFailures.Add(1)
		p.handshakeOver(false)
		return
	}
	p.conn = conn
	hctx, cancel := context.WithTimeout(ss.ctx, s.cfg.HandshakeTimeout)
	err = conn.HandshakeContext(hctx)
	cancel()
	p.handshakeOver(err == nil)
	if err != nil {
		s.st.dtlsFailures.Add(1)
		return
	}
	cipher := "unknown"
	if st, ok := conn.ConnectionState(); ok {
		cipher = dtls.CipherSuiteID(st.CipherSuiteID).String()
		if st.CipherSuiteID == pskgcm.ID {
			cipher = pskgcm.Name
		}
	}
	suitesMu.Lock()
	used := custom
	suitesMu.Unlock()
	if fc, err := fastPath(conn, used); err == nil {
		p.fast.Store(fc)
	} else {
		s.st.dtlsSlowPath.Add(1)
	}
	if !ss.setDTLS(p, cipher) {
		return
	}
	s.st.dtlsHandshakes.Add(1)
	err = p.read()
	ss.dtlsDown(p, err)
}

// handshakeOver gives back the handshake slot and, on success, marks the peer established.
func (p *dtlsPeer) handshakeOver(ok bool) {
	if ok {
		p.established.Store(true)
	}
	d := &p.srv.dtls
	d.mu.Lock()
	if p.counted {
		p.counted = false
		d.handshakes--
	}
	d.mu.Unlock()
}

// read handles the records pion decrypts: data before the fast path takes over, then only what is not
// application data (alerts end the loop).
func (p *dtlsPeer) read() error {
	buf := make([]byte, cstp.MaxPayload+cstp.DTLSHeaderLen)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return fmt.Errorf("%w: DTLS: %v", ErrTransport, err)
		}
		err = p.record(buf[:n])
		p.sess.flushUplink()
		if err != nil {
			return err
		}
	}
}

// record handles one decrypted record from the client: the AnyConnect type byte, then the payload.
func (p *dtlsPeer) record(pt []byte) error {
	ss := p.sess
	now := p.srv.now().UnixNano()
	ss.lastDTLSRx.Store(now)
	typ, payload, err := cstp.ParseDTLS(pt)
	if err != nil {
		return nil
	}
	switch typ {
	case cstp.Data:
		ss.fromClient(payload, true, now)
	case cstp.DPDRequest:
		// Echo the payload: openconnect sizes its MTU with padded DPD probes over DTLS.
		p.sendControl(cstp.DPDResp, payload)
	case cstp.DPDResp, cstp.Keepalive:
	case cstp.Disconnect:
		ss.end(fmt.Errorf("%w: over DTLS: %s", ErrClientExit, disconnectReason(payload)), "")
		return fmt.Errorf("%w: DISCONNECT over DTLS", ErrClientExit)
	default:
		ss.stats.unknown.Add(1)
	}
	return nil
}

// receiveFast opens the records of datagram b (in place) on the fast path; records that are not application
// data go to pion.
func (p *dtlsPeer) receiveFast(fc *dtlsrec.Conn, b []byte) {
	for len(b) > 0 {
		n, err := dtlsrec.RecordLen(b)
		if err != nil {
			p.srv.st.dtlsBadRecords.Add(1)
			return
		}
		rec := b[:n]
		b = b[n:]
		if !dtlsrec.IsApplicationData(rec, fc.Epoch()) {
			p.vc.deliver(rec)
			continue
		}
		pt, err := fc.Open(rec)
		if err != nil {
			p.srv.st.dtlsBadRecords.Add(1)
			continue
		}
		p.fastOK.Store(true)
		if p.record(pt) != nil {
			return
		}
	}
}

// errNotReady: the fast path waits for the client's first record; the packet goes over TLS meanwhile.
var errNotReady = errors.New("DTLS fast path not ready")

// seal makes the payload of b one record of type typ, framed in b's headroom, and returns it to send, on the
// fast path; for a suite the fast path lacks it sends it through pion and returns nil. A connection with a fast
// path never sends data through pion, so pion's sequence numbers stay below the fast path's (start 2^20): a nonce
// is never used twice.
func (p *dtlsPeer) seal(b *bufpool.Buf, typ cstp.Type) ([]byte, error) {
	n := b.N
	b.Data[headroom-cstp.DTLSHeaderLen] = byte(typ)
	if fc := p.fast.Load(); fc != nil {
		if !p.fastOK.Load() {
			return nil, errNotReady
		}
		return fc.Seal(b.Data[headroom-cstp.DTLSHeaderLen-dtlsrec.Headroom:], n+cstp.DTLSHeaderLen)
	}
	_, err := p.conn.Write(b.Data[headroom-cstp.DTLSHeaderLen : headroom+n])
	return nil, err
}

// sendBuf sends the payload of b as one record of type typ at once.
func (p *dtlsPeer) sendBuf(b *bufpool.Buf, typ cstp.Type) error {
	rec, err := p.seal(b, typ)
	if err == nil && rec != nil {
		_, err = p.vc.WriteTo(rec, nil)
	}
	return err
}

// sendControl sends a control record (DPD request or response) with a copy of payload.
func (p *dtlsPeer) sendControl(typ cstp.Type, payload []byte) {
	if len(payload) > maxPayload {
		return
	}
	b := p.srv.pool.Get()
	if b == nil {
		return
	}
	b.Off, b.N = headroom, copy(b.Data[headroom:], payload)
	_ = p.sendBuf(b, typ)
	p.srv.pool.Put(b)
}

// pionState mirrors the fields of pion's serialized connection state the fast path needs (State.MarshalBinary
// is a gob of a struct with these names).
type pionState struct {
	LocalEpoch     uint16
	LocalRandom    [32]byte
	RemoteRandom   [32]byte
	CipherSuiteID  uint16
	MasterSecret   []byte
	SequenceNumber uint64
	IsClient       bool
}

// fastStart is the first sequence number the fast path seals with: far above what pion used for the
// handshake and its retransmissions, as pion sends no data once the fast path exists.
const fastStart = 1 << 20

// fastPath makes the record fast path from pion's negotiated state; an error leaves the connection on pion's
// path (an unsupported suite, or a pion whose state no longer reads this way). custom are the AES-256-GCM
// suite instances pion made for the connection: pion cannot export a custom suite's state, so its keys come
// from the instance pion initialized.
func fastPath(conn *dtls.Conn, custom []*pskgcm.Suite) (*dtlsrec.Conn, error) {
	st, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("no connection state")
	}
	if st.CipherSuiteID == pskgcm.ID {
		for _, cs := range custom {
			if k := cs.Secrets(); k != nil && len(k.ClientRandom) == 32 && len(k.ServerRandom) == 32 {
				return dtlsrec.New(dtlsrec.Params{Suite: uint16(pskgcm.ID), MasterSecret: k.MasterSecret, IsServer: true,
					ClientRandom: [32]byte(k.ClientRandom), ServerRandom: [32]byte(k.ServerRandom), Epoch: 1, NextSeq: fastStart})
			}
		}
		return nil, errors.New("no initialized AES-256-GCM suite")
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var ps pionState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&ps); err != nil {
		return nil, err
	}
	if ps.IsClient || ps.LocalEpoch == 0 {
		return nil, errors.New("unexpected DTLS state")
	}
	return dtlsrec.New(dtlsrec.Params{Suite: ps.CipherSuiteID, MasterSecret: ps.MasterSecret, IsServer: true,
		ClientRandom: ps.RemoteRandom, ServerRandom: ps.LocalRandom, Epoch: ps.LocalEpoch, NextSeq: max(ps.SequenceNumber+1024, fastStart)})
}

// close ends the peer: its DTLS connection, its queue and its address mapping. It is idempotent.
func (p *dtlsPeer) close() {
	p.closeOnce.Do(func() {
		d := &p.srv.dtls
		d.mu.Lock()
		d.removeLocked(p)
		d.mu.Unlock()
		p.vc.Close()
		if p.conn != nil {
			_ = p.conn.Close()
		}
	})
}

// setDTLS makes an established peer the session's DTLS path, replacing the one before.
func (ss *session) setDTLS(p *dtlsPeer, cipher string) bool {
	ss.mu.Lock()
	if ss.ending || ss.handshaking != p {
		ss.mu.Unlock()
		return false
	}
	ss.handshaking = nil
	ss.lastDTLSRx.Store(ss.srv.now().UnixNano())
	old := ss.dtls.Swap(p)
	ss.mu.Unlock()
	if old != nil {
		old.close()
	}
	ss.stats.dtlsHandshakes.Add(1)
	ss.stats.dtlsCipher.Store(&cipher)
	ss.event(Event{Kind: EventDTLSUp, Remote: p.remote, Cipher: cipher})
	return true
}

// dtlsDown stops using p for the session: data goes over TLS until the client makes a new DTLS connection.
func (ss *session) dtlsDown(p *dtlsPeer, why error) {
	if ss.dtls.CompareAndSwap(p, nil) {
		ss.event(Event{Kind: EventDTLSDown, Err: why})
	}
	p.close()
}

// packetConn is a peer's view of the shared UDP socket, as pion's DTLS server wants it: ReadFrom returns the
// datagrams ServeDTLS routed to the peer, WriteTo sends to the peer through the socket, from the local address
// the peer's datagrams arrive at. It is safe for concurrent use.
type packetConn struct {
	conn   *udpsrc.Conn
	local  atomic.Pointer[udpsrc.Local] // replaced (rarely) by the socket reader
	remote netip.AddrPort
	raddr  net.Addr
	pool   *bufpool.Pool

	mu       sync.Mutex // guards closed, the queue's end, the deadline
	closed   bool
	in       chan *bufpool.Buf
	done     chan struct{}
	deadline time.Time
	dlChange chan struct{} // closed and replaced when the deadline changes
}

// peerQueueLen bounds the datagrams waiting for a peer's DTLS reader.
const peerQueueLen = 256

func newPacketConn(conn *udpsrc.Conn, remote netip.AddrPort, local udpsrc.Local, pool *bufpool.Pool) *packetConn {
	c := &packetConn{conn: conn, remote: remote, raddr: net.UDPAddrFromAddrPort(remote), pool: pool,
		in: make(chan *bufpool.Buf, peerQueueLen), done: make(chan struct{}), dlChange: make(chan struct{})}
	c.local.Store(&local)
	return c
}

// arrivedAt notes the local end of a datagram from the peer. Socket reader only.
func (c *packetConn) arrivedAt(local udpsrc.Local) {
	if *c.local.Load() != local {
		n := new(udpsrc.Local) // here, not &local: that would move every packet's local to the heap
		*n = local
		c.local.Store(n)
	}
}

// deliver queues a copy of datagram b; false when it was dropped (queue full, no buffer, closed).
func (c *packetConn) deliver(b []byte) bool {
	if len(b) > maxPayload {
		return false
	}
	buf := c.pool.Get()
	if buf == nil {
		return false
	}
	buf.Off, buf.N = headroom, copy(buf.Data[headroom:], b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.pool.Put(buf)
		return false
	}
	select {
	case c.in <- buf:
		return true
	default:
		c.pool.Put(buf)
		return false
	}
}

// ReadFrom implements net.PacketConn.
func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, changed := c.deadline, c.dlChange
		c.mu.Unlock()
		var timer *time.Timer
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		select {
		case buf := <-c.in:
			n := copy(b, buf.Payload())
			c.pool.Put(buf)
			stopTimer(timer)
			return n, c.raddr, nil
		case <-c.done:
			stopTimer(timer)
			return 0, nil, net.ErrClosed
		case <-changed:
			stopTimer(timer)
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// WriteTo implements net.PacketConn: every datagram goes to the peer, whatever addr says.
func (c *packetConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	return c.conn.WriteTo(b, c.remote, *c.local.Load())
}

// writeBatch sends the datagrams of recs to the peer, one system call for them all, and returns how many were
// sent.
func (c *packetConn) writeBatch(batch *udpsrc.Batch, recs [][]byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	return c.conn.WriteBatch(batch, recs, c.remote, *c.local.Load())
}

// Close implements net.PacketConn: it ends the peer's queue, not the shared socket.
func (c *packetConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.done)
	for {
		select {
		case buf := <-c.in:
			c.pool.Put(buf)
		default:
			return nil
		}
	}
}

// LocalAddr implements net.PacketConn.
func (c *packetConn) LocalAddr() net.Addr { return c.conn.PacketConn().LocalAddr() }

// SetDeadline implements net.PacketConn.
func (c *packetConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn; pion uses it to cancel a blocked read.
func (c *packetConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dlChange)
	c.dlChange = make(chan struct{})
	return nil
}

// SetWriteDeadline implements net.PacketConn; UDP writes do not block for long.
func (c *packetConn) SetWriteDeadline(time.Time) error { return nil }

// quietLogger discards pion's logs: the library reports through errors and counters, never a log.
type quietLogger struct{}

func (quietLogger) NewLogger(string) logging.LeveledLogger { return quietLogger{} }
func (quietLogger) Trace(string)                           {}
func (quietLogger) Tracef(string, ...any)                  {}
func (quietLogger) Debug(string)                           {}
func (quietLogger) Debugf(string, ...any)                  {}
func (quietLogger) Info(string)                            {}
func (quietLogger) Infof(string, ...any)                   {}
func (quietLogger) Warn(string)                            {}
func (quietLogger) Warnf(string, ...any)                   {}
func (quietLogger) Error(string)                           {}
func (quietLogger) Errorf(string, ...any)                  {}
