package openvpn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/internal/enginetest"
	"toride/sslvpn/internal/icmptest"
	"toride/sslvpn/openvpn"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/testclient"
	"toride/sslvpn/openvpn/internal/tlscrypt"
	"toride/sslvpn/openvpn/internal/wire"
	"toride/tests/lab"
)

// engine is an in-process server on loopback sockets.
type engine struct {
	t      *testing.T
	pki    *testPKI
	be     *testBackend
	srv    *openvpn.Server
	tcp    net.Listener
	udp    net.PacketConn
	served *enginetest.Served
}

func newEngine(t *testing.T, cfg openvpn.Config) *engine {
	t.Helper()
	base := runtime.NumGoroutine()
	e := &engine{t: t, pki: newTestPKI(t), be: newTestBackend()}
	cfg.TLS = e.pki.serverTLS()
	var err error
	if e.srv, err = openvpn.NewServer(cfg, e.be); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the server's shutdown.
	t.Cleanup(func() {
		if n := e.srv.Stats().BuffersInUse; n != 0 {
			t.Errorf("%d packet buffers still in use after shutdown", n)
		}
		// Every goroutine of the engine, the clients and the test must be gone.
		if err := lab.WaitFor(lab.Within(t, 5*time.Second), 20*time.Millisecond, func() error {
			if n := runtime.NumGoroutine(); n > base {
				return fmt.Errorf("%d goroutines, %d before the test", n, base)
			}
			return nil
		}); err != nil {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutine leak: %v\n%s", err, buf[:runtime.Stack(buf, true)])
		}
	})
	e.served = enginetest.Serve(t, e.srv.Close, openvpn.ErrClosed, 10*time.Second)
	e.tcp = e.served.ListenStream(nil, "127.0.0.1:0", e.srv.ServeConn)
	e.udp = e.served.ListenPackets(nil, "127.0.0.1:0", e.srv.ServeUDP)
	return e
}

// dial starts a test client over tcp or udp.
func (e *engine) dial(proto string, cfg testclient.Config, wrap func(net.Conn) net.Conn) *testclient.Client {
	e.t.Helper()
	var conn net.Conn
	var err error
	if proto == "udp" {
		conn, err = net.Dial("udp", e.udp.LocalAddr().String())
		cfg.UDP = true
	} else {
		conn, err = net.Dial("tcp", e.tcp.Addr().String())
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if wrap != nil {
		conn = wrap(conn)
	}
	if cfg.TLS == nil {
		cfg.TLS = e.pki.clientTLS(e.t)
	}
	c := testclient.New(conn, cfg)
	e.t.Cleanup(c.Close)
	return c
}

func connect(t *testing.T, c *testclient.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts, err := c.Connect(ctx)
	if err != nil {
		t.Fatalf("connect: %v (client: %v)", err, c.Err())
	}
	return opts
}

var (
	clientAddr = netip.MustParseAddr("10.8.0.2")
	serverAddr = netip.MustParseAddr("10.8.0.1")
)

// echo sends an ICMP echo request through the tunnel and waits for the reply.
func echo(t *testing.T, c *testclient.Client, seq uint16, size int) {
	t.Helper()
	req := icmptest.EchoRequest(clientAddr, serverAddr, seq, size)
	want, _ := icmptest.EchoReply(req, serverAddr)
	deadline := time.After(5 * time.Second)
	for attempt := 0; ; attempt++ {
		if err := c.Send(req); err != nil {
			t.Fatalf("send: %v", err)
		}
		retry := time.After(500 * time.Millisecond)
	wait:
		select {
		case got := <-c.Packets:
			if !bytes.Equal(got, want) {
				goto wait // something queued earlier
			}
			return
		case <-retry:
			// UDP tests may lose packets on purpose; retry.
		case <-deadline:
			t.Fatalf("no echo reply (client: %v)", c.Err())
		}
	}
}

func TestEngineCiphers(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		for _, tc := range []struct {
			cipher, auth string
			ekm          bool
		}{
			{"AES-256-GCM", "", true}, {"AES-128-GCM", "", true}, {"CHACHA20-POLY1305", "", true},
			{"AES-128-CBC", "SHA1", true}, {"AES-256-CBC", "SHA256", false}, {"AES-256-CBC", "SHA512", true},
			{"AES-256-GCM", "", false},
		} {
			t.Run(fmt.Sprintf("%s/%s/%s/ekm=%v", proto, tc.cipher, tc.auth, tc.ekm), func(t *testing.T) {
				e := newEngine(t, openvpn.Config{DataCiphers: []string{tc.cipher}, Auth: tc.auth, DisableKeyExport: !tc.ekm})
				auth := tc.auth
				if auth == "" {
					auth = "SHA1"
				}
				c := e.dial(proto, testclient.Config{Ciphers: tc.cipher, Auth: auth,
					Options: "V4,dev-type tun,cipher " + tc.cipher + ",auth " + auth + ",key-method 2,tls-client"}, nil)
				connect(t, c)
				cipher, ekm := c.Cipher()
				if cipher != tc.cipher || ekm != tc.ekm {
					t.Errorf("pushed %s ekm=%v, want %s ekm=%v", cipher, ekm, tc.cipher, tc.ekm)
				}
				for i := 0; i < 20; i++ {
					echo(t, c, uint16(i), []int{0, 1, 15, 16, 17, 100, 1400}[i%7])
				}
				s := <-e.be.connected
				if err := lab.WaitFor(lab.Within(t, time.Second), 10*time.Millisecond, func() error {
					if st := s.Stats(); st.PacketsIn < 20 || st.PacketsOut < 20 || st.DecryptErrors != 0 || st.Cipher != tc.cipher {
						return fmt.Errorf("stats %+v", st)
					}
					return nil
				}); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

func TestEnginePushReply(t *testing.T) {
	e := newEngine(t, openvpn.Config{Keepalive: 5 * time.Second, KeepaliveTimeout: 30 * time.Second})
	c := e.dial("udp", testclient.Config{}, nil)
	opts := connect(t, c)
	want := []string{"route 10.50.0.0 255.255.255.0", "route-gateway 10.8.0.1", "topology subnet",
		"ifconfig 10.8.0.2 255.255.255.0", "ping 5", "ping-restart 30", "peer-id 1", "cipher AES-256-GCM",
		"protocol-flags cc-exit tls-ekm"}
	if strings.Join(opts, ",") != strings.Join(want, ",") {
		t.Errorf("pushed (-got +want):\n-%s\n+%s", strings.Join(opts, ","), strings.Join(want, ","))
	}
}

func TestEngineOldClientGetsKeyDerivationOption(t *testing.T) {
	e := newEngine(t, openvpn.Config{})
	c := e.dial("tcp", testclient.Config{Proto: keymethod.ProtoDataV2 | keymethod.ProtoTLSKeyExport}, nil)
	opts := connect(t, c) // no IV_PROTO_REQUEST_PUSH: the client must ask
	if !strings.Contains(strings.Join(opts, ","), "key-derivation tls-ekm") {
		t.Errorf("pushed %v, want key-derivation tls-ekm", opts)
	}
	echo(t, c, 1, 64)
}

func TestEngineAuthFailed(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			e := newEngine(t, openvpn.Config{})
			e.be.set("session limit reached (20)", "")
			c := e.dial(proto, testclient.Config{Username: "bob", Password: openvpn.FormatStaticChallenge("", "1")}, nil)
			c.Connect(lab.Within(t, 0))
			if m := waitMessage(t, c, "AUTH_FAILED"); m != "AUTH_FAILED,session limit reached (20)" {
				t.Errorf("got %q", m)
			}
			if err := <-e.be.failed; !errors.Is(err, openvpn.ErrAuthFailed) {
				t.Errorf("HandshakeFailed(%v), want ErrAuthFailed", err)
			}
			if req := e.be.lastRequest(); req.Username != "bob" {
				t.Errorf("username %q", req.Username)
			}
		})
	}
}

func TestEngineNoCommonCipher(t *testing.T) {
	e := newEngine(t, openvpn.Config{DataCiphers: []string{"AES-256-GCM"}})
	c := e.dial("udp", testclient.Config{Ciphers: "AES-128-CBC", Options: "V4,cipher AES-128-CBC"}, nil)
	c.Connect(lab.Within(t, 0))
	if m := waitMessage(t, c, "AUTH_FAILED"); !strings.Contains(m, "cipher negotiation failed") {
		t.Errorf("got %q", m)
	}
	if err := <-e.be.failed; !errors.Is(err, openvpn.ErrNoCommonCipher) {
		t.Errorf("HandshakeFailed(%v), want ErrNoCommonCipher", err)
	}
}

func TestEngineAuthDigestMismatch(t *testing.T) {
	e := newEngine(t, openvpn.Config{DataCiphers: []string{"AES-128-CBC"}, Auth: "SHA256"})
	c := e.dial("tcp", testclient.Config{Ciphers: "AES-128-CBC", Options: "V4,cipher AES-128-CBC,auth SHA1"}, nil)
	c.Connect(lab.Within(t, 0))
	if m := waitMessage(t, c, "AUTH_FAILED"); !strings.Contains(m, "client uses auth SHA1, server uses SHA256") {
		t.Errorf("got %q", m)
	}
}

func waitMessage(t *testing.T, c *testclient.Client, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.Messages:
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s message (client: %v)", prefix, c.Err())
		}
	}
}

func TestEngineCloseSession(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			e := newEngine(t, openvpn.Config{})
			c := e.dial(proto, testclient.Config{}, nil)
			connect(t, c)
			s := <-e.be.connected
			s.Close("revoked, bye")
			s.Close("twice") // idempotent
			if m := waitMessage(t, c, "HALT"); m != "HALT,revoked, bye" {
				t.Errorf("got %q", m)
			}
			if err := <-e.be.disconnected; !errors.Is(err, openvpn.ErrKilled) {
				t.Errorf("Disconnected(%v), want ErrKilled", err)
			}
		})
	}
}

func TestEngineRenegotiation(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto+"/client", func(t *testing.T) {
			e := newEngine(t, openvpn.Config{})
			c := e.dial(proto, testclient.Config{}, nil)
			connect(t, c)
			s := <-e.be.connected
			for i := 0; i < 9; i++ { // wraps the key id past 7
				echo(t, c, uint16(i), 100)
				if err := c.Renegotiate(lab.Within(t, 5*time.Second)); err != nil {
					t.Fatalf("renegotiation %d: %v", i, err)
				}
				echo(t, c, uint16(100+i), 100)
			}
			if err := lab.WaitFor(lab.Within(t, 5*time.Second), 20*time.Millisecond, func() error {
				if n := s.Stats().Renegotiations; n != 9 {
					return fmt.Errorf("server counted %d renegotiations, want 9", n)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
		t.Run(proto+"/server", func(t *testing.T) {
			e := newEngine(t, openvpn.Config{RenegotiateAfter: 300 * time.Millisecond, LameDuck: time.Second})
			c := e.dial(proto, testclient.Config{}, nil)
			connect(t, c)
			deadline := time.Now().Add(2 * time.Second)
			for i := 0; time.Now().Before(deadline); i++ {
				echo(t, c, uint16(i), 500)
				time.Sleep(20 * time.Millisecond)
			}
			if n := c.Renegotiations(); n < 3 {
				t.Errorf("%d server-initiated renegotiations in 2s, want at least 3", n)
			}
		})
	}
}

func TestEngineExitNotify(t *testing.T) {
	for _, tc := range []struct {
		name string
		exit func(*testclient.Client)
	}{
		{"control-channel", func(c *testclient.Client) { c.SendControl("EXIT") }},
		{"occ", func(c *testclient.Client) { c.SendOCCExit() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, openvpn.Config{})
			c := e.dial("udp", testclient.Config{}, nil)
			connect(t, c)
			tc.exit(c)
			expectError(t, e.be.disconnected, openvpn.ErrClientExit, "Disconnected", 5*time.Second)
		})
	}
}

func TestEnginePingTimeout(t *testing.T) {
	e := newEngine(t, openvpn.Config{Keepalive: time.Second, KeepaliveTimeout: 2 * time.Second})
	c := e.dial("udp", testclient.Config{}, nil)
	connect(t, c)
	start := time.Now()
	select {
	case err := <-e.be.disconnected:
		// An idle server pings every Keepalive.
		if n := c.Pings(); n < 3 {
			t.Errorf("client got %d pings in %v, want about 4", n, time.Since(start))
		}
		if !errors.Is(err, openvpn.ErrPingTimeout) {
			t.Errorf("Disconnected(%v), want ErrPingTimeout", err)
		}
		if d := time.Since(start); d < 3500*time.Millisecond || d > 5*time.Second {
			t.Errorf("timed out after %v, want about 4s (twice KeepaliveTimeout)", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("a silent client was not timed out")
	}
}

// A client that proved its address but never speaks TLS is dropped at the handshake timeout.
func TestEngineHandshakeTimeout(t *testing.T) {
	e := newEngine(t, openvpn.Config{HandshakeTimeout: 500 * time.Millisecond})
	newRawClient(t, dialFrom(t, "udp", "127.0.0.2", e.udp.LocalAddr().String()), nil).prove()
	expectError(t, e.be.failed, openvpn.ErrHandshakeTimeout, "HandshakeFailed", 5*time.Second)
}

// lossyConn drops, duplicates and reorders datagrams in both directions.
type lossyConn struct {
	net.Conn
	mu      sync.Mutex
	rnd     *mrand.Rand
	held    []byte
	dropped int
}

func (l *lossyConn) roll() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rnd.Float64()
}

func (l *lossyConn) Write(b []byte) (int, error) {
	switch r := l.roll(); {
	case r < 0.2:
		l.mu.Lock()
		l.dropped++
		l.mu.Unlock()
		return len(b), nil
	case r < 0.3:
		l.Conn.Write(b)
	case r < 0.4:
		// Hold this one back and send it after the next.
		l.mu.Lock()
		prev := l.held
		l.held = append([]byte(nil), b...)
		l.mu.Unlock()
		if prev != nil {
			l.Conn.Write(prev)
		}
		return len(b), nil
	}
	n, err := l.Conn.Write(b)
	l.mu.Lock()
	held := l.held
	l.held = nil
	l.mu.Unlock()
	if held != nil {
		l.Conn.Write(held)
	}
	return n, err
}

func (l *lossyConn) Read(b []byte) (int, error) {
	for {
		n, err := l.Conn.Read(b)
		if err != nil || l.roll() >= 0.2 {
			return n, err
		}
	}
}

func TestEngineLossyUDP(t *testing.T) {
	e := newEngine(t, openvpn.Config{ControlRetransmit: 200 * time.Millisecond})
	var lc *lossyConn
	c := e.dial("udp", testclient.Config{RTO: 200 * time.Millisecond}, func(c net.Conn) net.Conn {
		lc = &lossyConn{Conn: c, rnd: mrand.New(mrand.NewPCG(1, 2))}
		return lc
	})
	connect(t, c)
	echo(t, c, 1, 200)
	if err := c.Renegotiate(lab.Within(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	echo(t, c, 2, 200)
	lc.mu.Lock()
	t.Logf("%d datagrams dropped by the client's link", lc.dropped)
	lc.mu.Unlock()
}

func TestEngineTLSCrypt(t *testing.T) {
	keyFile := fixedTLSCryptKey(t)
	key, err := tlscrypt.ParseKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			e := newEngine(t, openvpn.Config{TLSCrypt: keyFile})
			c := e.dial(proto, testclient.Config{TLSCrypt: key}, nil)
			connect(t, c)
			echo(t, c, 1, 1000)
			if err := c.Renegotiate(lab.Within(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			echo(t, c, 2, 1000)
		})
	}
}

// Garbage from the network must never crash the server or leave sessions behind.
func TestEngineGarbage(t *testing.T) {
	e := newEngine(t, openvpn.Config{HandshakeTimeout: time.Second})
	good := e.dial("udp", testclient.Config{}, nil)
	connect(t, good)
	rnd := mrand.New(mrand.NewPCG(3, 4))
	pkts := [][]byte{{}, {0}, {0xff}, {byte(wire.DataV2) << 3}, {byte(wire.ControlV1) << 3, 1, 2}}
	for i := 0; i < 2000; i++ {
		p := make([]byte, rnd.IntN(300))
		rand.Read(p)
		if len(p) > 0 && i%2 == 0 {
			// Valid opcodes reach deeper.
			p[0] = byte(1+rnd.IntN(11))<<3 | byte(rnd.IntN(8))
		}
		pkts = append(pkts, p)
	}
	udp, err := net.Dial("udp", e.udp.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, p := range pkts {
		udp.Write(p)
	}
	// From the good client's own address too: garbage in its session.
	for _, p := range pkts[:500] {
		good.SendRaw(p)
	}
	for i := 0; i < 20; i++ {
		tcp, err := net.Dial("tcp", e.tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[i*50 : i*50+50] {
			tcp.Write(p)
		}
		tcp.Close()
	}
	echo(t, good, 1, 100)
	if st := e.srv.Stats(); st.Malformed == 0 {
		t.Errorf("stats %+v: no malformed packets counted", st)
	}
}

// A client that stops reading fills its queue: SendPacket drops and counts without blocking.
func TestEngineSlowClientNeverBlocks(t *testing.T) {
	e := newEngine(t, openvpn.Config{QueueLen: 16})
	var pc *pausableConn
	c := e.dial("tcp", testclient.Config{}, func(c net.Conn) net.Conn {
		pc = &pausableConn{Conn: c, resume: make(chan struct{})}
		return pc
	})
	connect(t, c)
	s := <-e.be.connected
	pc.pause()
	pkt := icmptest.EchoRequest(serverAddr, clientAddr, 1, 1400)
	start := time.Now()
	sent := 0
	for i := 0; i < 20000; i++ {
		if s.SendPacket(pkt) {
			sent++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20000 SendPacket calls took %v", d)
	}
	if st := s.Stats(); st.Dropped == 0 {
		t.Errorf("nothing dropped (%d queued) while the client was not reading: %+v", sent, st)
	}
	pc.unpause()
	echo(t, c, 7, 100)
}

type pausableConn struct {
	net.Conn
	mu     sync.Mutex
	resume chan struct{}
	paused bool
}

func (p *pausableConn) pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }
func (p *pausableConn) unpause() {
	p.mu.Lock()
	p.paused = false
	close(p.resume)
	p.mu.Unlock()
}

func (p *pausableConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	paused, resume := p.paused, p.resume
	p.mu.Unlock()
	if paused {
		<-resume
	}
	return p.Conn.Read(b)
}

func (p *pausableConn) Close() error {
	p.mu.Lock()
	if p.paused {
		p.paused = false
		close(p.resume)
	}
	p.mu.Unlock()
	return p.Conn.Close()
}

// A restarted UDP client (same address, new session id) replaces its old session.
func TestEngineUDPClientRestart(t *testing.T) {
	e := newEngine(t, openvpn.Config{})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().String()
	conn.Close()
	dialFrom := func() net.Conn {
		la, _ := net.ResolveUDPAddr("udp", local)
		ra := e.udp.LocalAddr().(*net.UDPAddr)
		c, err := net.DialUDP("udp", la, ra)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := testclient.New(dialFrom(), testclient.Config{UDP: true, TLS: e.pki.clientTLS(t)})
	connect(t, c1)
	c1.Close()
	c2 := testclient.New(dialFrom(), testclient.Config{UDP: true, TLS: e.pki.clientTLS(t)})
	defer c2.Close()
	connect(t, c2)
	if err := <-e.be.disconnected; !errors.Is(err, openvpn.ErrReplaced) {
		t.Errorf("old session ended with %v, want ErrReplaced", err)
	}
	echo(t, c2, 1, 10)
}

func TestEngineClosedServer(t *testing.T) {
	e := newEngine(t, openvpn.Config{})
	e.srv.Close()
	e.srv.Close()
	a, b := net.Pipe()
	defer b.Close()
	if err := e.srv.ServeConn(context.Background(), a); !errors.Is(err, openvpn.ErrClosed) {
		t.Errorf("ServeConn on a closed server: %v", err)
	}
}

// A TCP packet larger than the engine handles is skipped; the session goes on.
func TestEngineOversizedTCPPacket(t *testing.T) {
	e := newEngine(t, openvpn.Config{})
	c := e.dial("tcp", testclient.Config{}, nil)
	connect(t, c)
	if err := c.SendRaw(append([]byte{byte(wire.DataV2) << 3, 0, 0, 1}, make([]byte, 5000)...)); err != nil {
		t.Fatal(err)
	}
	echo(t, c, 1, 100)
}

// BenchmarkEngineHandshake measures a whole connection (TLS 1.3 with client certificate, key-method 2, push) of
// the in-process test client on loopback; both ends run in this process.
func BenchmarkEngineHandshake(b *testing.B) {
	for _, proto := range []string{"tcp", "udp"} {
		b.Run(proto, func(b *testing.B) {
			pki := newTestPKI(b)
			be := newTestBackend()
			be.connected = make(chan openvpn.Session, b.N+16)
			be.disconnected = make(chan error, b.N+16)
			srv, err := openvpn.NewServer(openvpn.Config{TLS: pki.serverTLS()}, be)
			if err != nil {
				b.Fatal(err)
			}
			served := enginetest.Serve(b, srv.Close, openvpn.ErrClosed, 10*time.Second)
			var addr string
			if proto == "udp" {
				addr = served.ListenPackets(nil, "127.0.0.1:0", srv.ServeUDP).LocalAddr().String()
			} else {
				addr = served.ListenStream(nil, "127.0.0.1:0", srv.ServeConn).Addr().String()
			}
			ctls := pki.clientTLS(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				conn, err := net.Dial(proto, addr)
				if err != nil {
					b.Fatal(err)
				}
				c := testclient.New(conn, testclient.Config{TLS: ctls, UDP: proto == "udp"})
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				if _, err := c.Connect(cctx); err != nil {
					b.Fatal(err)
				}
				ccancel()
				c.SendControl("EXIT")
				<-be.disconnected
				c.Close()
			}
			b.StopTimer()
		})
	}
}
