package openvpn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"toride/sslvpn/openvpn"
	"toride/sslvpn/openvpn/internal/testclient"
	"toride/sslvpn/openvpn/internal/tlscrypt"
	"toride/sslvpn/openvpn/internal/wire"
	"toride/tests/lab"
)

// rawClient writes a client's first packets by hand: a hard reset, and the acknowledgement of the server's reset
// that proves the client receives at its address. It never speaks TLS.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	udp  bool
	sid  wire.SessionID
	tc   *tlscrypt.Context // nil without tls-crypt
	at   time.Time         // the time its tls-crypt packets carry (zero: now)
}

func newRawClient(t testing.TB, conn net.Conn, key *tlscrypt.Key) *rawClient {
	r := &rawClient{t: t, conn: conn}
	_, r.udp = conn.(*net.UDPConn)
	r.sid = wire.SessionID{byte(len(t.Name())), 0xc1}
	copy(r.sid[2:], conn.LocalAddr().String())
	if key != nil {
		r.tc = tlscrypt.New(key, false)
	}
	return r
}

// packet encodes p, wrapped with tls-crypt when the client has it.
func (r *rawClient) packet(p wire.ControlPacket) []byte {
	p.SessionID = r.sid
	if r.tc == nil {
		return p.Append(nil)
	}
	at := r.at
	if at.IsZero() {
		at = time.Now()
	}
	pkt, err := r.tc.Wrap(nil, p.AppendHeader(nil), p.AppendBody(nil), at)
	if err != nil {
		r.t.Fatal(err)
	}
	return pkt
}

func (r *rawClient) reset() []byte {
	return r.packet(wire.ControlPacket{Opcode: wire.ControlHardResetClientV2})
}

// echo acknowledges the server's reset whose session id is cookie.
func (r *rawClient) echo(cookie wire.SessionID) []byte {
	p := wire.ControlPacket{Opcode: wire.AckV1, NumAcks: 1, RemoteSessionID: cookie}
	return r.packet(p)
}

func (r *rawClient) send(pkt []byte) {
	r.t.Helper()
	if !r.udp {
		pkt = append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...)
	}
	if _, err := r.conn.Write(pkt); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next packet from the server within d.
func (r *rawClient) read(d time.Duration) ([]byte, error) {
	r.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	if r.udp {
		n, err := r.conn.Read(buf)
		return buf[:n], err
	}
	if _, err := io.ReadFull(r.conn, buf[:2]); err != nil {
		return nil, err
	}
	n := int(buf[0])<<8 | int(buf[1])
	_, err := io.ReadFull(r.conn, buf[:n])
	return buf[:n], err
}

// serverReset reads the server's hard reset and returns its session id.
func (r *rawClient) serverReset(d time.Duration) wire.SessionID {
	r.t.Helper()
	pkt, err := r.read(d)
	if err != nil {
		r.t.Fatalf("no answer to the hard reset: %v", err)
	}
	op, _, sid, _, err := wire.ParseControlHeader(pkt)
	if err != nil || op != wire.ControlHardResetServerV2 {
		r.t.Fatalf("answer %x: %v %v, want the server's hard reset", pkt, op, err)
	}
	return sid
}

// prove makes a UDP session that never goes further: reset, the server's answer, its echo.
func (r *rawClient) prove() []byte {
	r.t.Helper()
	r.send(r.reset())
	echo := r.echo(r.serverReset(2 * time.Second))
	r.send(echo)
	return echo
}

// dialFrom connects from a loopback source address of its own (all of 127.0.0.0/8 is local).
func dialFrom(t testing.TB, network, src, to string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if network == "udp" {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	} else {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial(network, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitStats(t *testing.T, srv *openvpn.Server, d time.Duration, ok func(openvpn.ServerStats) error) {
	t.Helper()
	if err := lab.WaitFor(lab.Within(t, d), 10*time.Millisecond, func() error { return ok(srv.Stats()) }); err != nil {
		t.Fatalf("%v: stats %+v", err, srv.Stats())
	}
}

// connectAsync starts a real client's login and returns where its result arrives.
func connectAsync(t *testing.T, c *testclient.Client) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Connect(ctx)
		if err != nil {
			err = fmt.Errorf("%v (client: %v)", err, c.Err())
		}
		done <- err
	}()
	return done
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// Thousands of hard resets from as many source ports, the way a spoofer sends them: each is answered once,
// never with more bytes than it had, never again, and nothing is kept; a real client logs in meanwhile.
func TestEngineUDPResetFloodKeepsNoState(t *testing.T) {
	const flood = 3000
	e := newEngine(t, openvpn.Config{ControlRetransmit: 200 * time.Millisecond})
	base := runtime.NumGoroutine()
	socks := make([]*rawClient, flood)
	for i := range socks {
		socks[i] = newRawClient(t, dialFrom(t, "udp", "127.0.0.2", e.udp.LocalAddr().String()), nil)
	}
	heap := heapInUse()
	good := e.dial("udp", testclient.Config{}, nil)
	var login <-chan error
	start := time.Now()
	for i, r := range socks {
		if i == flood/2 {
			login = connectAsync(t, good) // once a server keeping state for resets would be full
		}
		r.send(r.reset())
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // some pacing, or the server's socket buffer drops most of them
		}
	}
	if err := <-login; err != nil {
		t.Fatalf("a real login during the flood: %v", err)
	}
	echo(t, good, 1, 100)
	t.Logf("%d resets sent and a real client connected in %v", flood, time.Since(start))
	if n := runtime.NumGoroutine(); n > base+8 {
		t.Errorf("%d goroutines during the flood, %d before it", n, base)
	}
	t.Logf("heap in use grew by %d KiB during the flood (one client connected)", (heapInUse()-heap)>>10)
	// Each reset that reached the server (a few may be lost in its socket buffer) is answered once, never with
	// more bytes than it had, and never again: read what came, then again past several retransmission timeouts.
	answers := make([]int, flood)
	readAll := func(wait time.Duration, max int) {
		for i, r := range socks {
			for range max {
				pkt, err := r.read(wait)
				if err != nil {
					break
				}
				answers[i]++
				if len(pkt) > len(r.reset()) {
					t.Fatalf("a %d-byte answer to a %d-byte reset", len(pkt), len(r.reset()))
				}
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	readAll(20*time.Millisecond, 1)
	time.Sleep(time.Second)
	readAll(time.Millisecond, 3)
	answered := 0
	for i, n := range answers {
		if n > 1 {
			t.Fatalf("source %d got %d packets: the server retransmitted to an unproven address", i, n)
		}
		answered += n
	}
	st := e.srv.Stats()
	t.Logf("%d resets answered", answered)
	// The real client's resets are answered too, its retransmissions included.
	if answered < flood/10 || st.ResetAnswers < uint64(answered)+1 || st.ResetAnswers > uint64(answered)+4 {
		t.Errorf("stats %+v: %d answers received, want them counted (and the real client's)", st, answered)
	}
	if st.Handshakes != 1 || st.PendingHandshakes != 0 {
		t.Errorf("stats %+v: want the real client's handshake only", st)
	}
}

// TCP connections that send nothing but a hard reset each cost a session, within MaxHandshakes and
// MaxHandshakesPerSource: older ones make room for newer ones, and a real client logs in through the flood.
// (Until the shedding policy was shared, a source over its bound had its newcomer refused: every connection now
// gets a session, and one of the source's own ends.)
func TestEngineTCPResetFloodIsBounded(t *testing.T) {
	const sources, perSource, max = 40, 4, 16
	e := newEngine(t, openvpn.Config{MaxHandshakes: max, MaxHandshakesPerSource: perSource, HandshakeTimeout: 20 * time.Second})
	base, heap := runtime.NumGoroutine(), heapInUse()
	var conns []*rawClient
	for i := 0; i < sources; i++ {
		for j := 0; j < perSource+1; j++ {
			r := newRawClient(t, dialFrom(t, "tcp", fmt.Sprintf("127.0.1.%d", i+1), e.tcp.Addr().String()), nil)
			r.send(r.reset())
			conns = append(conns, r)
		}
	}
	// Which connections a source loses depends on the order they are served in; the totals do not.
	waitStats(t, e.srv, 5*time.Second, func(st openvpn.ServerStats) error {
		if st.Handshakes != uint64(len(conns)) {
			return fmt.Errorf("want each of %d connections given a session", len(conns))
		}
		return nil
	})
	st := e.srv.Stats()
	if st.PendingHandshakes != max || st.Busy != st.Handshakes-max {
		t.Errorf("stats %+v: want %d handshakes in progress, and every other one ended", st, max)
	}
	// The engine's goroutines: three per session in progress, one per connection (the accept loop's), and a
	// few of its own; a session per connection would be three more each. An evicted session is counted (Busy) when
	// its end is asked for, before its goroutines have returned: under load the count takes a moment to come down.
	bound := base + len(conns) + 3*max + 8
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); n > bound && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	if n > bound {
		t.Errorf("%d goroutines, want at most %d", n, bound)
	}
	t.Logf("heap in use grew by %d KiB with %d connections holding a reset", (heapInUse()-heap)>>10, len(conns))
	good := e.dial("tcp", testclient.Config{}, nil)
	connect(t, good)
	echo(t, good, 1, 100)
	for _, r := range conns {
		r.conn.Close()
	}
}

// With tls-crypt, no first packet opens a session or earns an answer unless it is authentic, within the time
// window and not a replay.
func TestEngineTLSCryptFirstPacket(t *testing.T) {
	keyFile := fixedTLSCryptKey(t)
	key, err := tlscrypt.ParseKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var otherKey tlscrypt.Key
	for i := range otherKey {
		otherKey[i] = byte(i * 7)
	}
	refused := []struct {
		name string
		key  *tlscrypt.Key
		at   time.Duration
	}{
		{"wrong key", &otherKey, 0},
		{"ten minutes old", key, -10 * time.Minute},
		{"ten minutes ahead", key, 10 * time.Minute},
	}
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			e := newEngine(t, openvpn.Config{TLSCrypt: keyFile, HandshakeTimeout: time.Second})
			to := e.udp.LocalAddr().String()
			if proto == "tcp" {
				to = e.tcp.Addr().String()
			}
			for i, tc := range refused {
				r := newRawClient(t, dialFrom(t, proto, "127.0.0.2", to), tc.key)
				r.at = time.Now().Add(tc.at)
				r.send(r.reset())
				pkt, err := r.read(300 * time.Millisecond)
				var ne net.Error
				switch {
				case err == nil:
					t.Errorf("%s: answered (%d bytes)", tc.name, len(pkt))
				case proto == "udp" && !(errors.As(err, &ne) && ne.Timeout()):
					t.Errorf("%s: %v", tc.name, err)
				case proto == "tcp" && errors.As(err, &ne) && ne.Timeout():
					t.Errorf("%s: connection left open", tc.name)
				}
				// The wrong key first: it is malformed; each stale one is counted as a replay.
				want := openvpn.ServerStats{Malformed: 1, Replayed: uint64(i)}
				if st := e.srv.Stats(); st.Handshakes != 0 || st.Malformed != want.Malformed || st.Replayed != want.Replayed {
					t.Errorf("%s: stats %+v, want no session and the packet counted", tc.name, st)
				}
			}

			// A real client's first session-opening packet, replayed once the session has ended.
			r := newRawClient(t, dialFrom(t, proto, "127.0.0.3", to), key)
			var opener []byte
			if proto == "udp" {
				opener = r.prove()
			} else {
				opener = r.reset()
				r.send(opener)
				r.serverReset(2 * time.Second)
			}
			waitStats(t, e.srv, 2*time.Second, func(st openvpn.ServerStats) error {
				if st.Handshakes != 1 {
					return errors.New("want the session open")
				}
				return nil
			})
			expectError(t, e.be.failed, openvpn.ErrHandshakeTimeout, "HandshakeFailed", 3*time.Second)
			if proto == "tcp" {
				r = newRawClient(t, dialFrom(t, proto, "127.0.0.3", to), key)
			}
			r.send(opener)
			waitStats(t, e.srv, 2*time.Second, func(st openvpn.ServerStats) error {
				if st.Replayed != 3 {
					return errors.New("want the replay counted")
				}
				return nil
			})
			if st := e.srv.Stats(); st.Handshakes != 1 {
				t.Errorf("stats %+v: a replayed first packet opened a second session", st)
			}

			good := e.dial(proto, testclient.Config{TLSCrypt: key}, nil)
			connect(t, good)
			echo(t, good, 1, 100)
		})
	}
}

// Handshakes in progress at the bound: each new client ends the oldest handshake, not itself, and a real client
// always gets in.
func TestEngineUDPHandshakeBound(t *testing.T) {
	e := newEngine(t, openvpn.Config{MaxHandshakes: 3, HandshakeTimeout: 10 * time.Second})
	var mu sync.Mutex
	for i := 0; i < 10; i++ {
		r := newRawClient(t, dialFrom(t, "udp", "127.0.0.2", e.udp.LocalAddr().String()), nil)
		mu.Lock()
		r.prove()
		mu.Unlock()
		if i >= 3 {
			expectError(t, e.be.failed, openvpn.ErrBusy, "HandshakeFailed", 2*time.Second)
		}
	}
	waitStats(t, e.srv, 2*time.Second, func(st openvpn.ServerStats) error {
		if st.Handshakes != 10 || st.Busy != 7 || st.PendingHandshakes != 3 {
			return errors.New("want 10 handshakes, 7 ended for newer ones and 3 in progress")
		}
		return nil
	})
	good := e.dial("udp", testclient.Config{}, nil)
	connect(t, good)
	echo(t, good, 1, 100)
	// A source at its own bound gives its own oldest handshake for its new client, well within the total.
	// (Until the shedding policy was shared, the new client was refused.)
	e2 := newEngine(t, openvpn.Config{MaxHandshakesPerSource: 2, HandshakeTimeout: 10 * time.Second})
	for i := 0; i < 3; i++ {
		newRawClient(t, dialFrom(t, "udp", "127.0.0.4", e2.udp.LocalAddr().String()), nil).prove()
	}
	expectError(t, e2.be.failed, openvpn.ErrBusy, "HandshakeFailed", 2*time.Second)
	waitStats(t, e2.srv, 2*time.Second, func(st openvpn.ServerStats) error {
		if st.Handshakes != 3 || st.Busy != 1 || st.PendingHandshakes != 2 {
			return errors.New("want 3 handshakes, the first ended for the third, 2 in progress")
		}
		return nil
	})
}

// gatedConn passes a client's first write, its hard reset, and holds the others until open is closed: a client
// slow to go on with its handshake, over a long path or from a loaded machine.
type gatedConn struct {
	net.Conn
	open   chan struct{}
	writes atomic.Int32
}

func (g *gatedConn) Write(p []byte) (int, error) {
	if g.writes.Add(1) > 1 {
		<-g.open
	}
	return g.Conn.Write(p)
}

// A flood from more sources than MaxHandshakes holds at MaxHandshakesPerSource keeps the table full; a real
// client from another source, its handshake under way all the while, is not the one ended to make room, and
// connects. With the oldest handshake ended overall, it would be the first to go.
func TestEngineManySourcesFloodSparesAHandshake(t *testing.T) {
	const sources, perSource, max = 8, 4, 16
	e := newEngine(t, openvpn.Config{MaxHandshakes: max, MaxHandshakesPerSource: perSource, HandshakeTimeout: 20 * time.Second})
	gate := make(chan struct{})
	good := e.dial("tcp", testclient.Config{}, func(c net.Conn) net.Conn { return &gatedConn{Conn: c, open: gate} })
	login := connectAsync(t, good)
	waitStats(t, e.srv, 2*time.Second, func(st openvpn.ServerStats) error {
		if st.Handshakes != 1 {
			return errors.New("want the real client's session")
		}
		return nil
	})
	for i := range sources * perSource {
		r := newRawClient(t, dialFrom(t, "tcp", fmt.Sprintf("127.0.1.%d", 1+i%sources), e.tcp.Addr().String()), nil)
		r.send(r.reset())
	}
	const flood = sources * perSource
	waitStats(t, e.srv, 5*time.Second, func(st openvpn.ServerStats) error {
		if st.Handshakes != 1+flood || st.Busy != 1+flood-max || st.PendingHandshakes != max {
			return fmt.Errorf("want %d sessions, %d ended to make room", 1+flood, 1+flood-max)
		}
		return nil
	})
	close(gate)
	if err := <-login; err != nil {
		t.Fatalf("the real client, its handshake under way during the flood: %v", err)
	}
	echo(t, good, 1, 100)
}

// loginCountingConn is a served connection with the port demultiplexer's Authenticated method.
type loginCountingConn struct {
	net.Conn
	logins chan struct{}
}

func (c *loginCountingConn) Authenticated() { c.logins <- struct{}{} }

// A TCP connection tells its listener once its client has connected, and not when the login is refused.
func TestEngineTCPReportsLogin(t *testing.T) {
	e := newEngine(t, openvpn.Config{})
	logins := make(chan struct{}, 4)
	ln := e.served.ListenStream(nil, "127.0.0.1:0", func(ctx context.Context, c net.Conn) error {
		return e.srv.ServeConn(ctx, &loginCountingConn{Conn: c, logins: logins})
	})
	dial := func() *testclient.Client {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := testclient.New(conn, testclient.Config{TLS: e.pki.clientTLS(t)})
		t.Cleanup(c.Close)
		return c
	}
	e.be.set("refused for the test", "")
	refused := dial()
	refused.Connect(lab.Within(t, 0))
	expectError(t, e.be.failed, openvpn.ErrAuthFailed, "HandshakeFailed", 5*time.Second)
	select {
	case <-logins:
		t.Fatal("a refused client was reported as logged in")
	default:
	}
	e.be.set("", "")
	connect(t, dial())
	select {
	case <-logins:
	case <-time.After(5 * time.Second):
		t.Fatal("a connected client was not reported as logged in")
	}
	select {
	case <-logins:
		t.Fatal("reported twice")
	case <-time.After(100 * time.Millisecond):
	}
}
