package anyconnect

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"toride/sslvpn/anyconnect/internal/httpwire"
	"toride/sslvpn/internal/bufpool"
	"toride/sslvpn/shed"
)

// Server is the AnyConnect gateway: it serves TCP connections (TLS, HTTP login, CSTP tunnels) handed to
// ServeConn and the UDP socket (DTLS) handed to ServeDTLS. It is safe for concurrent use; Close stops it.
type Server struct {
	cfg      Config
	groups   []*group
	byName   map[string]*group
	tls      *tls.Config
	be       Backend
	hsObs    HandshakeObserver
	evObs    SessionObserver
	certHash string
	pool     *bufpool.Pool

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // ServeConn and ServeDTLS calls, sessions
	closed atomic.Bool

	formKey [32]byte // seals the main form's handle (formtoken.go)

	mu        sync.Mutex
	pending   map[string]*pendingLogin // logins waiting for the answer to their challenge, by handle
	cookies   map[[32]byte]*cookie
	sessions  map[uint64]*session
	byAppID   map[[appIDLen]byte]*session
	conns     map[net.Conn]struct{} // live ServeConn connections, closed by Close
	nextID    uint64
	lastSweep time.Time

	// Under mu: the order in which pre-login state gives way (package shed).
	pendingOrder  *shed.Queue[*pendingLogin]
	unusedCookies *shed.Queue[*cookie] // cookies in the order they were issued, to bound those not used yet

	dtls dtlsState

	// tap, when set (tests only, before serving), sees what clients send: "tls" for the plaintext of each TLS
	// connection (HTTP requests, then CSTP frames), "dtls-hello" for ClientHello datagrams. conn numbers the
	// TLS connections.
	tap     func(conn uint64, kind string, b []byte)
	tapConn atomic.Uint64
	connIDs atomic.Uint64
	// dtlsSuites, when set (tests only), replaces the DTLS suites offered: to make a client use each suite.
	dtlsSuites []uint16

	st serverCounters
}

type serverCounters struct {
	tlsHandshakes, tlsFailures                      atomic.Uint64
	loginsOK, loginsFailed, loginsExpired, busy     atomic.Uint64
	loginsEvicted, cookiesEvicted                   atomic.Uint64
	connects, refused, badCookies, reconnects       atomic.Uint64
	dtlsHandshakes, dtlsFailures, dtlsUnknown       atomic.Uint64
	dtlsNoPeer, dtlsQueueFull, httpErrors, profiles atomic.Uint64
	noExporter, dtlsBadRecords, dtlsSlowPath        atomic.Uint64
}

// ServerStats are a server's counters and gauges.
type ServerStats struct {
	Sessions        int    `json:"sessions"`         // sessions, connected or waiting for a reconnect
	Detached        int    `json:"detached"`         // of Sessions, those waiting for a reconnect
	DTLSSessions    int    `json:"dtls_sessions"`    // of Sessions, those with DTLS up
	PendingLogins   int    `json:"pending_logins"`   // logins waiting for the answer to their challenge
	Cookies         int    `json:"cookies"`          // valid session cookies
	TLSHandshakes   uint64 `json:"tls_handshakes"`   // completed
	TLSFailures     uint64 `json:"tls_failures"`     // failed or timed out
	LoginsOK        uint64 `json:"logins_ok"`        // cookies issued
	LoginsFailed    uint64 `json:"logins_failed"`    // refused by the backend or missing a factor
	LoginsExpired   uint64 `json:"logins_expired"`   // answers to a form that had timed out (or had been evicted)
	LoginsEvicted   uint64 `json:"logins_evicted"`   // pending logins dropped, oldest first, to make room under a bound
	CookiesEvicted  uint64 `json:"cookies_evicted"`  // cookies not used yet dropped, oldest first, to make room under a bound
	Busy            uint64 `json:"busy"`             // DTLS handshakes turned away by a limit
	Connects        uint64 `json:"connects"`         // sessions admitted
	Refused         uint64 `json:"refused"`          // CONNECTs the backend refused
	BadCookies      uint64 `json:"bad_cookies"`      // CONNECTs or downloads with an invalid cookie
	Reconnects      uint64 `json:"reconnects"`       // sessions resumed with their cookie
	DTLSHandshakes  uint64 `json:"dtls_handshakes"`  // completed
	DTLSFailures    uint64 `json:"dtls_failures"`    // failed or timed out
	DTLSUnknownID   uint64 `json:"dtls_unknown_id"`  // ClientHellos with no session's application id
	DTLSNoPeer      uint64 `json:"dtls_no_peer"`     // datagrams from an address with no DTLS state
	DTLSQueueFull   uint64 `json:"dtls_queue_full"`  // datagrams dropped before decryption
	DTLSNoExporter  uint64 `json:"dtls_no_exporter"` // CONNECTs asking for DTLS over TLS 1.2 without extended master secret
	DTLSBadRecords  uint64 `json:"dtls_bad_records"` // records that failed authentication, replay check or parsing
	DTLSSlowPath    uint64 `json:"dtls_slow_path"`   // DTLS connections whose suite leaves data records to pion
	HTTPErrors      uint64 `json:"http_errors"`      // malformed or unsupported requests
	ProfilesServed  uint64 `json:"profiles_served"`  // client profile downloads
	BuffersInFlight int    `json:"buffers_inflight"` // packet buffers out of the pool
}

// NewServer returns a server for cfg whose logins and sessions go to b. b may also implement
// HandshakeObserver and SessionObserver.
func NewServer(cfg Config, b Backend) (*Server, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: no backend", ErrConfig)
	}
	c, groups, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: c, groups: groups, byName: map[string]*group{}, be: b, pool: bufpool.New(c.MaxBuffers),
		pending: map[string]*pendingLogin{}, cookies: map[[32]byte]*cookie{}, sessions: map[uint64]*session{},
		byAppID: map[[appIDLen]byte]*session{}, conns: map[net.Conn]struct{}{}}
	for _, g := range groups {
		s.byName[strings.ToLower(g.Name)] = g
	}
	_, _ = rand.Read(s.formKey[:])
	s.pendingOrder = shed.NewQueue[*pendingLogin](c.MaxPendingLogins, loginsPerSource, nil)
	s.unusedCookies = shed.NewQueue(4*c.MaxPendingLogins, cookiesPerSource, s.unusedCookieGone)
	s.hsObs, _ = b.(HandshakeObserver)
	s.evObs, _ = b.(SessionObserver)
	s.tls = recordPerWrite(c.TLS)
	if len(c.TLS.Certificates) > 0 && len(c.TLS.Certificates[0].Certificate) > 0 {
		sum := sha1.Sum(c.TLS.Certificates[0].Certificate[0])
		s.certHash = strings.ToUpper(hex.EncodeToString(sum[:]))
	}
	s.dtls.init()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// recordPerWrite clones the caller's TLS configuration with dynamic record sizing off, also in the
// configurations its GetConfigForClient returns: crypto/tls would otherwise split a large write into a small
// first record, and openconnect drops a CSTP frame that does not arrive in one record.
func recordPerWrite(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.DynamicRecordSizingDisabled = true
	if get := base.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hello)
			if err != nil || cc == nil {
				return cc, err
			}
			cc = cc.Clone()
			cc.DynamicRecordSizingDisabled = true
			return cc, nil
		}
	}
	return c
}

// Close stops the server: it refuses new connections, ends every session (telling clients the server is
// shutting down), closes the connections being served and waits for ServeConn, ServeDTLS and the sessions to
// return. It is idempotent.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		s.wg.Wait()
		return nil
	}
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.end(fmt.Errorf("%w", ErrShutdown), "server shutting down")
	}
	for _, ss := range sessions {
		<-ss.done
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.dtls.closeAll()
	s.wg.Wait()
	return nil
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	st := ServerStats{Sessions: len(s.sessions), PendingLogins: len(s.pending), Cookies: len(s.cookies)}
	for _, ss := range s.sessions {
		if ss.cstp.Load() == nil {
			st.Detached++
		}
		if ss.dtls.Load() != nil {
			st.DTLSSessions++
		}
	}
	s.mu.Unlock()
	c := &s.st
	st.TLSHandshakes, st.TLSFailures = c.tlsHandshakes.Load(), c.tlsFailures.Load()
	st.LoginsOK, st.LoginsFailed, st.LoginsExpired, st.Busy = c.loginsOK.Load(), c.loginsFailed.Load(), c.loginsExpired.Load(), c.busy.Load()
	st.LoginsEvicted, st.CookiesEvicted = c.loginsEvicted.Load(), c.cookiesEvicted.Load()
	st.Connects, st.Refused, st.BadCookies, st.Reconnects = c.connects.Load(), c.refused.Load(), c.badCookies.Load(), c.reconnects.Load()
	st.DTLSHandshakes, st.DTLSFailures, st.DTLSUnknownID = c.dtlsHandshakes.Load(), c.dtlsFailures.Load(), c.dtlsUnknown.Load()
	st.DTLSNoPeer, st.DTLSQueueFull, st.HTTPErrors, st.ProfilesServed = c.dtlsNoPeer.Load(), c.dtlsQueueFull.Load(), c.httpErrors.Load(), c.profiles.Load()
	st.DTLSNoExporter, st.DTLSBadRecords, st.DTLSSlowPath = c.noExporter.Load(), c.dtlsBadRecords.Load(), c.dtlsSlowPath.Load()
	st.BuffersInFlight = s.pool.Outstanding()
	return st
}

// Revoke invalidates every cookie whose identity match accepts and cuts their sessions with reason, as for a
// revoked certificate or a deleted user: a login that has not connected yet cannot connect with its cookie any
// more. It returns how many cookies it invalidated. It does not block on the sessions' ends.
func (s *Server) Revoke(match func(*Identity) bool, reason string) int {
	s.mu.Lock()
	var cut []*session
	n := 0
	for k, ck := range s.cookies {
		if !match(ck.ident) {
			continue
		}
		n++
		delete(s.cookies, k)
		if ck.sess != nil {
			cut = append(cut, ck.sess)
		}
	}
	s.mu.Unlock()
	for _, ss := range cut {
		ss.Close(reason)
	}
	return n
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// sweepLocked drops expired logins and cookies, at most every 15 s, so abandoned ones do not pile up. It runs
// when logins are kept and cookies are issued: no goroutine of its own. s.mu must be held.
func (s *Server) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < 15*time.Second {
		return
	}
	s.lastSweep = now
	for _, p := range s.pending {
		if now.After(p.expires) {
			s.removePendingLocked(p)
			p.password = ""
		}
	}
	for k, ck := range s.cookies {
		if ck.sess == nil && now.After(ck.expires) {
			delete(s.cookies, k)
		}
	}
	s.unusedCookies.Prune()
}

// track registers a connection being served, so Close can close it; false when the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// conn is what a served connection knows of its client.
type conn struct {
	remote netip.AddrPort
	local  netip.AddrPort
	tls    *tls.Conn
	state  tls.ConnectionState
	br     *bufio.Reader
	// inTunnel is set once a CONNECT made this connection a session's transport: its end is then the
	// session's business, not a failed handshake.
	inTunnel bool
	// authenticated is the served connection's Authenticated method, if it has one.
	authenticated func()
	// id tells pending logins which connection kept them; logins are the handles of those it keeps, oldest
	// first (at most loginsPerConn).
	id     uint64
	logins []string
}

// loggedIn tells a listener that bounds the connections awaiting login (the port demultiplexer) that this one
// has logged in: a login succeeded on it, or its cookie opened a tunnel.
func (c *conn) loggedIn() {
	if c.authenticated != nil {
		c.authenticated()
	}
}

// verifiedCert is the client certificate the TLS handshake verified, or nil.
func (c *conn) verifiedCert() *tlsCert {
	if len(c.state.VerifiedChains) == 0 || len(c.state.VerifiedChains[0]) == 0 {
		return nil
	}
	return &tlsCert{leaf: c.state.VerifiedChains[0][0], chains: c.state.VerifiedChains}
}

// ServeConn serves one TCP connection whose first bytes are a TLS ClientHello (the demultiplexer replays
// what it read): the TLS handshake, HTTP requests (login, profile download) and, after a CONNECT, the CSTP
// tunnel of a session until the connection ends. It closes c and returns when the client leaves, the
// connection fails, ctx ends or the server is closed. The error says why the connection ended; a client that
// simply closed between requests returns nil. If c has a method Authenticated(), ServeConn calls it when a login
// succeeds on the connection or its CONNECT opens a tunnel.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) (err error) {
	if !s.track(c) {
		c.Close()
		return ErrClosed
	}
	defer s.untrack(c)
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	closeOnCancel := context.AfterFunc(ctx, func() { c.Close() })
	defer closeOnCancel()

	cn := &conn{remote: addrPortOf(c.RemoteAddr()), local: addrPortOf(c.LocalAddr()), id: s.connIDs.Add(1)}
	if a, ok := c.(interface{ Authenticated() }); ok {
		cn.authenticated = a.Authenticated
	}
	defer func() {
		if err != nil && s.hsObs != nil && !cn.inTunnel {
			s.hsObs.HandshakeFailed(cn.remote, err)
		}
	}()
	cork := &corkConn{Conn: c}
	tc := tls.Server(cork, s.tls)
	hctx, hcancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	hcancel()
	if err != nil {
		s.st.tlsFailures.Add(1)
		if ctx.Err() != nil && s.ctx.Err() != nil {
			return fmt.Errorf("%w: %v", ErrShutdown, err)
		}
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	s.st.tlsHandshakes.Add(1)
	cn.tls, cn.state = tc, tc.ConnectionState()
	// The buffer holds a whole header line and, after CONNECT, a whole CSTP frame.
	var r io.Reader = tc
	if s.tap != nil {
		r = &tapReader{r: tc, conn: s.tapConn.Add(1), tap: s.tap}
	}
	cn.br = bufio.NewReaderSize(r, 32<<10)
	first := true
	for {
		// A client gets HandshakeTimeout for its first request; between requests an idle keep-alive
		// connection may wait longer (a user typing), as Cisco's clients keep theirs open.
		wait := s.cfg.HandshakeTimeout
		if !first {
			wait *= 6
		}
		first = false
		_ = c.SetReadDeadline(s.now().Add(wait))
		req, err := httpwire.ReadRequest(cn.br, httpwire.Limits{})
		if err != nil {
			switch {
			case err == io.EOF:
				return nil
			case isTimeout(err):
				return fmt.Errorf("%w: waiting for an HTTP request: %v", ErrTimeout, err)
			case errors.Is(err, httpwire.ErrMalformed) || errors.Is(err, httpwire.ErrTooLarge) || errors.Is(err, httpwire.ErrUnsupported):
				s.st.httpErrors.Add(1)
				s.write(cn, &httpwire.Response{Status: 400, Header: closeHeader()})
				return fmt.Errorf("%w: %v", ErrProtocol, err)
			case ctx.Err() != nil:
				return fmt.Errorf("%w: %v", ErrShutdown, ctx.Err())
			default:
				return fmt.Errorf("%w: %v", ErrTransport, err)
			}
		}
		_ = c.SetReadDeadline(time.Time{})
		if req.Method == "CONNECT" {
			return s.serveTunnel(ctx, cn, cork, req)
		}
		resp := s.handleHTTP(ctx, cn, req)
		keep := req.KeepAlive() && resp.Status < 400
		if !keep {
			resp.Header = append(resp.Header, closeHeader()...)
		}
		if err := s.write(cn, resp); err != nil {
			return fmt.Errorf("%w: %v", ErrTransport, err)
		}
		if !keep {
			if resp.Status >= 400 {
				return fmt.Errorf("%w: answered %d to %s %s", ErrProtocol, resp.Status, req.Method, req.Path)
			}
			return nil
		}
	}
}

func closeHeader() []httpwire.Field { return []httpwire.Field{{Name: "Connection", Value: "close"}} }

// write sends a response in one write, bounded by the handshake timeout.
func (s *Server) write(cn *conn, r *httpwire.Response) error {
	r.Header = append(r.Header, httpwire.Field{Name: "X-Transcend-Version", Value: "1"})
	_ = cn.tls.SetWriteDeadline(s.now().Add(s.cfg.HandshakeTimeout))
	_, err := cn.tls.Write(r.Append(nil))
	_ = cn.tls.SetWriteDeadline(time.Time{})
	return err
}

// handleHTTP answers every request but CONNECT.
func (s *Server) handleHTTP(ctx context.Context, cn *conn, req *httpwire.Request) *httpwire.Response {
	path := req.Path
	switch {
	case req.Method == "POST" && !strings.HasPrefix(path, "/profiles/") && !strings.HasPrefix(path, "/CACHE/"):
		return s.handleAuth(ctx, cn, req)
	case req.Method != "GET" && req.Method != "HEAD":
		return &httpwire.Response{Status: 405}
	case strings.HasPrefix(path, "/profiles/") || strings.HasPrefix(path, "/CACHE/stc/profiles/"):
		return s.handleProfile(req)
	case strings.HasPrefix(path, "/+CSCOT+/") || strings.HasPrefix(path, "/+CSCOE+/") || path == "/logout":
		// Cisco's clients fetch translation tables and customizations; nothing to offer, nothing to refuse.
		return &httpwire.Response{Status: 200, Header: xmlHeader()}
	default:
		// A GET of the portal: old clients start this way. Answer with the login form, as for an init.
		return s.startLogin(ctx, cn, s.groupFromPath(path), path != "/" && path != "/auth", "", req)
	}
}

func xmlHeader() []httpwire.Field {
	return []httpwire.Field{{Name: "Content-Type", Value: "text/xml"}, {Name: "X-Aggregate-Auth", Value: "1"}}
}

// handleProfile serves a group's client profile to a holder of a valid cookie of that group.
func (s *Server) handleProfile(req *httpwire.Request) *httpwire.Response {
	ck := s.cookieOf(req)
	if ck == nil {
		s.st.badCookies.Add(1)
		return &httpwire.Response{Status: 401}
	}
	g := ck.group
	name := req.Path[strings.LastIndexByte(req.Path, '/')+1:]
	if g.profileURI == "" || name != g.Name+".xml" {
		return &httpwire.Response{Status: 404}
	}
	s.st.profiles.Add(1)
	return &httpwire.Response{Status: 200, Header: []httpwire.Field{{Name: "Content-Type", Value: "text/xml"}}, Body: g.ProfileXML}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// corkConn batches the TLS records a session's writer produces into one write to the socket: writes pass
// through until Cork, are kept until Flush. crypto/tls may write (a KeyUpdate) from the reading goroutine, so
// it is safe for concurrent use.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

// corkLimit is how much a corked connection keeps before writing anyway.
const corkLimit = 64 << 10

func (c *corkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(b)
	}
	if len(c.buf)+len(b) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(b) > corkLimit {
			return c.Conn.Write(b)
		}
	}
	c.buf = append(c.buf, b...)
	return len(b), nil
}

// Cork keeps writes until Flush.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Flush writes what was kept and lets writes pass through again.
func (c *corkConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// tapReader shows what it reads to a test's tap.
type tapReader struct {
	r    io.Reader
	conn uint64
	tap  func(uint64, string, []byte)
}

func (t *tapReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 {
		t.tap(t.conn, "tls", b[:n])
	}
	return n, err
}
