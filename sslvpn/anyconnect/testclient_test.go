package anyconnect_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/gob"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/anyconnect/internal/authxml"
	"toride/sslvpn/anyconnect/internal/cstp"
	"toride/sslvpn/anyconnect/internal/dtlsrec"
	"toride/sslvpn/anyconnect/internal/pskgcm"
	"toride/sslvpn/internal/enginetest"
)

// engine is an in-process server on the loopback, for tests that need no namespace.
type engine struct {
	t       testing.TB
	pki     *testPKI
	be      *testBackend
	srv     *anyconnect.Server
	served  *enginetest.Served
	addr    string // TCP
	udpPort int
}

func newEngine(t testing.TB, cfg anyconnect.Config) *engine {
	t.Helper()
	e := &engine{t: t, pki: newTestPKI(t, "127.0.0.1"), be: newTestBackend()}
	// The sockets first: the server is told its DTLS port.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.udpPort = pc.LocalAddr().(*net.UDPAddr).Port
	if cfg.TLS == nil {
		cfg.TLS = e.pki.serverTLS()
	}
	if cfg.DTLS {
		cfg.DTLSPort = e.udpPort
	}
	if e.srv, err = anyconnect.NewServer(cfg, e.be); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the server's shutdown.
	t.Cleanup(func() {
		if n := e.srv.Stats().BuffersInFlight; n != 0 {
			t.Errorf("%d packet buffers not returned to the pool", n)
		}
		// Every goroutine of the engine has ended with Close.
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := goroutines("sslvpn/anyconnect.")
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left after Close:\n%s", strings.Join(left, "\n\n"))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	e.served = enginetest.Serve(t, e.srv.Close, anyconnect.ErrClosed, 15*time.Second)
	e.served.Stream(ln, e.srv.ServeConn)
	e.served.Packets(pc, e.srv.ServeDTLS)
	return e
}

// cutAll closes every accepted TCP connection from the server's side.
func (e *engine) cutAll() { e.served.CloseConns(false) }

// goClient speaks the gateway's HTTP over one TLS connection, as openconnect does.
type goClient struct {
	t       testing.TB
	e       *engine
	src     net.IP // the source address, nil for the kernel's choice
	cfg     *tls.Config
	conn    *tls.Conn
	br      *bufio.Reader
	cookies map[string]string
}

func (e *engine) client(cert *tls.Certificate) *goClient {
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &goClient{t: e.t, e: e, cfg: cfg, cookies: map[string]string{}}
	c.dial()
	return c
}

// clientFrom is a client whose connections come from src, an address of the loopback's 127.0.0.0/8 (every
// one of them is local): a test can play many sources.
func (e *engine) clientFrom(src string) *goClient {
	c := &goClient{t: e.t, e: e, src: net.ParseIP(src), cfg: &tls.Config{InsecureSkipVerify: true}, cookies: map[string]string{}}
	c.dial()
	return c
}

func (c *goClient) dial() {
	c.t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	if c.src != nil {
		d.LocalAddr = &net.TCPAddr{IP: c.src}
	}
	conn, err := tls.DialWithDialer(d, "tcp", c.e.addr, c.cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.br = conn, bufio.NewReader(conn)
	c.t.Cleanup(func() { conn.Close() })
}

// do sends a request and reads the response; Set-Cookie values are kept and sent back.
func (c *goClient) do(method, path string, body []byte, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: vpn\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-test\r\n", method, path)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	var ck []string
	for k, v := range c.cookies {
		ck = append(ck, k+"="+v)
	}
	if len(ck) > 0 {
		fmt.Fprintf(&b, "Cookie: %s\r\n", strings.Join(ck, "; "))
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: application/xml\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		c.t.Fatal(err)
	}
	req := &http.Request{Method: method}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	var data []byte
	if method != "CONNECT" || resp.StatusCode != 200 {
		data, _ = io.ReadAll(resp.Body)
	}
	for _, sc := range resp.Header.Values("Set-Cookie") {
		kv, _, _ := strings.Cut(sc, ";")
		if k, v, ok := strings.Cut(kv, "="); ok {
			if v == "" {
				delete(c.cookies, k)
			} else {
				c.cookies[k] = v
			}
		}
	}
	return resp, data
}

// rawRequest is one HTTP request as openconnect sends it.
func rawRequest(method, path string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: vpn\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-test\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: application/xml\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// pipeline sends req n times on the client's connection without waiting for the answers (a kept-alive
// connection used as fast as the server reads it), reads the answers and returns how many were 200 with want
// in their body. It stops at the first answer it cannot read (the server closed the connection).
func (c *goClient) pipeline(n int, req []byte, want string) int {
	c.t.Helper()
	ok, _, _ := pipeline(c.conn, c.br, n, req, want, time.Now().Add(60*time.Second))
	return ok
}

// pipeline sends req n times on conn from a goroutine while it reads the answers from br, until deadline. It
// returns how many answers were 200 with want in their body, how many were read, and the last body. Unless
// every answer was read, conn is closed.
func pipeline(conn net.Conn, br *bufio.Reader, n int, req []byte, want string, deadline time.Time) (ok, read int, last []byte) {
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		batch := bytes.Repeat(req, 64)
		for sent := 0; sent < n; sent += 64 {
			b := batch
			if n-sent < 64 {
				b = batch[:(n-sent)*len(req)]
			}
			if _, err := conn.Write(b); err != nil {
				return
			}
		}
	}()
	for read < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			break
		}
		read++
		if resp.StatusCode == 200 && bytes.Contains(body, []byte(want)) {
			ok++
		}
		last = body
	}
	if read < n {
		conn.Close() // ends the writer
	}
	<-done
	return ok, read, last
}

// doc is a gateway answer, parsed.
type doc struct {
	Type   string `xml:"type,attr"`
	Handle string `xml:"opaque>aggauth-handle"`
	Token  string `xml:"session-token"`
	Auth   struct {
		ID      string `xml:"id,attr"`
		Message string `xml:"message"`
		Error   string `xml:"error"`
		Form    struct {
			Inputs []struct {
				Type string `xml:"type,attr"`
				Name string `xml:"name,attr"`
			} `xml:"input"`
			Options []struct {
				Value    string `xml:"value,attr"`
				Selected string `xml:"selected,attr"`
				Label    string `xml:",chardata"`
			} `xml:"select>option"`
		} `xml:"form"`
	} `xml:"auth"`
	CertHash string `xml:"config>vpn-base-config>server-cert-hash"`
	Profile  struct {
		URI  string `xml:"uri"`
		Hash string `xml:"hash"`
	} `xml:"config>vpn-profile-manifest>vpn>file"`
}

func (d *doc) inputs() string {
	var n []string
	for _, in := range d.Auth.Form.Inputs {
		n = append(n, in.Name)
	}
	return strings.Join(n, ",")
}

func (c *goClient) post(r *authxml.Request) (*http.Response, *doc) {
	c.t.Helper()
	resp, body := c.do("POST", "/", r.Marshal())
	d := &doc{}
	if resp.StatusCode == 200 {
		if err := xml.Unmarshal(body, d); err != nil {
			c.t.Fatalf("answer is not XML: %v\n%s", err, body)
		}
	}
	return resp, d
}

func (c *goClient) init(group string) *doc {
	c.t.Helper()
	resp, d := c.post(&authxml.Request{Type: authxml.TypeInit, Version: "v9.01", DeviceID: "linux-64", GroupSelect: group})
	if resp.StatusCode != 200 {
		c.t.Fatalf("init: %s", resp.Status)
	}
	return d
}

func (c *goClient) reply(d *doc, group string, fields ...string) *doc {
	c.t.Helper()
	r := &authxml.Request{Type: authxml.TypeAuthReply, Version: "v9.01", DeviceID: "linux-64", AuthHandle: d.Handle, GroupSelect: group}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Auth = append(r.Auth, authxml.Field{Name: fields[i], Value: fields[i+1]})
	}
	resp, nd := c.post(r)
	if resp.StatusCode != 200 {
		c.t.Fatalf("auth-reply: %s", resp.Status)
	}
	return nd
}

// login runs the whole login to group and returns the cookie.
func (c *goClient) login(group, user, pass, otp string) string {
	c.t.Helper()
	d := c.init(group)
	for i := 0; i < 4 && d.Auth.ID != "success"; i++ {
		if d.Auth.Error != "" {
			c.t.Fatalf("login failed: %s", d.Auth.Error)
		}
		switch d.Auth.ID {
		case "main":
			var f []string
			for _, in := range d.Auth.Form.Inputs {
				switch in.Name {
				case "username":
					f = append(f, "username", user)
				case "password":
					f = append(f, "password", pass)
				}
			}
			d = c.reply(d, group, f...)
		case "challenge":
			d = c.reply(d, group, "answer", otp)
		default:
			c.t.Fatalf("unexpected form %q", d.Auth.ID)
		}
	}
	if d.Auth.ID != "success" || d.Token == "" || c.cookies["webvpn"] != d.Token {
		c.t.Fatalf("no cookie: %+v, cookies %v", d, c.cookies)
	}
	return d.Token
}

// tunnel is a CSTP tunnel of the test client, with the DTLS parameters the server gave.
type tunnel struct {
	c      *goClient
	hdr    http.Header
	fr     *cstp.FrameReader
	psk    []byte
	appID  []byte
	wmu    sync.Mutex
	dtls   *dtls.Conn
	udp    net.PacketConn // the DTLS client's socket
	mute   *muteConn
	closed bool
	suite  dtls.CipherSuiteID // the one the DTLS client offers
}

// connect sends CONNECT with cookie; it returns the tunnel, or nil and the status on refusal.
func (c *goClient) connect(cookie string, dtlsWanted bool) (*tunnel, *http.Response) {
	c.t.Helper()
	hdr := []string{"Cookie", "webvpn=" + cookie, "X-CSTP-Version", "1", "X-CSTP-Base-MTU", "1500", "X-CSTP-Hostname", "test"}
	if dtlsWanted {
		hdr = append(hdr, "X-DTLS-CipherSuite", "PSK-NEGOTIATE:AES128-SHA", "X-DTLS-Master-Secret", strings.Repeat("00", 48))
	}
	saved := c.cookies
	c.cookies = map[string]string{}
	resp, _ := c.do("CONNECT", "/CSCOSSLC/tunnel", nil, hdr...)
	c.cookies = saved
	if resp.StatusCode != 200 {
		return nil, resp
	}
	tn := &tunnel{c: c, hdr: resp.Header, fr: cstp.NewFrameReader(c.br), suite: dtls.TLS_PSK_WITH_AES_128_GCM_SHA256}
	if id := resp.Header.Get("X-DTLS-App-ID"); id != "" {
		tn.appID, _ = hex.DecodeString(id)
		st := c.conn.ConnectionState()
		tn.psk, _ = st.ExportKeyingMaterial("EXPORTER-openconnect-psk", nil, 32)
	}
	return tn, resp
}

func (tn *tunnel) send(typ cstp.Type, p []byte) error {
	tn.wmu.Lock()
	defer tn.wmu.Unlock()
	f, _ := cstp.AppendFrame(nil, typ, p)
	_, err := tn.c.conn.Write(f)
	return err
}

// recv reads the next CSTP frame, within d.
func (tn *tunnel) recv(d time.Duration) (cstp.Type, []byte, error) {
	_ = tn.c.conn.SetReadDeadline(time.Now().Add(d))
	typ, p, err := tn.fr.ReadFrame()
	return typ, bytes.Clone(p), err
}

// recvType reads frames until one of type want (others are skipped).
func (tn *tunnel) recvType(want cstp.Type, d time.Duration) ([]byte, error) {
	deadline := time.Now().Add(d)
	for {
		typ, p, err := tn.recv(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		if typ == want {
			return p, nil
		}
	}
}

// startDTLS makes the DTLS connection openconnect would: PSK from the TLS exporter, the application id in the
// ClientHello's session id.
func (tn *tunnel) startDTLS(udpPort int) error { return tn.startDTLSWithin(udpPort, 5*time.Second) }

func (tn *tunnel) startDTLSWithin(udpPort int, d time.Duration) error {
	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pc := &muteConn{PacketConn: raw, stop: make(chan struct{})}
	raddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort}
	appID := tn.appID
	conn, err := dtls.ClientWithOptions(pc, raddr,
		dtls.WithPSK(func([]byte) ([]byte, error) { return tn.psk, nil }),
		dtls.WithPSKIdentityHint([]byte("psk")),
		dtls.WithCipherSuites(builtin(tn.suite)),
		dtls.WithCustomCipherSuites(func() []dtls.CipherSuite {
			if tn.suite == pskgcm.ID {
				return pskgcm.Suites()
			}
			return nil
		}),
		dtls.WithClientHelloMessageHook(func(ch handshake.MessageClientHello) handshake.Message {
			ch.SessionID = appID
			return &ch
		}),
		dtls.WithLoggerFactory(quiet{}),
	)
	if err != nil {
		pc.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return err
	}
	tn.dtls, tn.udp, tn.mute = conn, raw, pc
	tn.c.t.Cleanup(func() { conn.Close(); pc.Close() })
	return nil
}

// builtin is the suite to offer from pion's own: a custom suite is offered first, then AES-128-GCM.
func builtin(s dtls.CipherSuiteID) dtls.CipherSuiteID {
	if s == pskgcm.ID {
		return dtls.TLS_PSK_WITH_AES_128_GCM_SHA256
	}
	return s
}

// muteConn lets a test take the DTLS client's socket away from pion: once muted, pion reads nothing more and
// the test reads the datagrams itself.
type muteConn struct {
	net.PacketConn
	muted    atomic.Bool
	stop     chan struct{}
	once     sync.Once
	deadline atomic.Int64 // pion's read deadline (UnixNano), 0 for none
}

func (m *muteConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if m.muted.Load() {
			<-m.stop
			return 0, nil, net.ErrClosed
		}
		if dl := m.deadline.Load(); dl != 0 && time.Now().UnixNano() > dl {
			return 0, nil, os.ErrDeadlineExceeded
		}
		_ = m.PacketConn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, a, err := m.PacketConn.ReadFrom(b)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			select {
			case <-m.stop:
				return 0, nil, net.ErrClosed
			default:
				continue
			}
		}
		return n, a, err
	}
}

func (m *muteConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		m.deadline.Store(0)
	} else {
		m.deadline.Store(t.UnixNano())
	}
	return nil
}

func (m *muteConn) Close() error {
	m.once.Do(func() { close(m.stop) })
	return m.PacketConn.Close()
}

// rawDTLS returns the client's side of the record layer, from the pion client's negotiated state, so a test can
// send records without pion's per-record costs.
func (tn *tunnel) rawDTLS() *dtlsrec.Conn {
	tn.c.t.Helper()
	st, _ := tn.dtls.ConnectionState()
	raw, err := st.MarshalBinary()
	if err != nil {
		tn.c.t.Fatal(err)
	}
	var ps struct {
		LocalEpoch                uint16
		LocalRandom, RemoteRandom [32]byte
		CipherSuiteID             uint16
		MasterSecret              []byte
		SequenceNumber            uint64
	}
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&ps); err != nil {
		tn.c.t.Fatal(err)
	}
	c, err := dtlsrec.New(dtlsrec.Params{Suite: ps.CipherSuiteID, MasterSecret: ps.MasterSecret, ClientRandom: ps.LocalRandom,
		ServerRandom: ps.RemoteRandom, Epoch: ps.LocalEpoch, NextSeq: ps.SequenceNumber + 1024})
	if err != nil {
		tn.c.t.Fatal(err)
	}
	return c
}
