package openvpn_test

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/openvpn"
	"toride/sslvpn/openvpn/internal/testclient"
)

// floatingConn is a client's UDP path that can move to a new source address and port mid-session, as behind
// a NAT that rebinds or on a phone that changes networks. Answers are read only from the server address the
// client dialed.
type floatingConn struct {
	net.Conn
	server *net.UDPAddr
	mu     sync.Mutex
	cur    *net.UDPConn
	closed bool
}

func newFloatingConn(t *testing.T, from string, server *net.UDPAddr) *floatingConn {
	f := &floatingConn{server: server}
	f.moveTo(t, from)
	f.Conn = f.cur
	return f
}

// moveTo continues from a new socket on address from (any port).
func (f *floatingConn) moveTo(t *testing.T, from string) netip.AddrPort {
	t.Helper()
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)}, f.server)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	old := f.cur
	f.cur = c
	f.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (f *floatingConn) current() (*net.UDPConn, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.closed
}

func (f *floatingConn) Read(b []byte) (int, error) {
	for {
		c, closed := f.current()
		if closed {
			return 0, net.ErrClosed
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.Read(b)
		var ne net.Error
		if err == nil || !(errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout()) {
			return n, err
		}
	}
}

func (f *floatingConn) Write(b []byte) (int, error) {
	c, _ := f.current()
	return c.Write(b)
}

func (f *floatingConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return f.cur.Close()
}

// TestEngineUDPClientFloats: a UDP client whose address and port change keeps its session, and the answers
// follow it, from the address it dialed on a server listening on every address (127.0.0.2, which is not the
// kernel's preferred source towards the client). A packet from elsewhere that is not the client's moves nothing.
func TestEngineUDPClientFloats(t *testing.T) {
	e := newEngine(t, openvpn.Config{})
	pc := e.served.ListenPackets(nil, "0.0.0.0:0", e.srv.ServeUDP)
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: pc.LocalAddr().(*net.UDPAddr).Port}
	fc := newFloatingConn(t, "127.0.0.1", server)
	c := testclient.New(fc, testclient.Config{UDP: true, TLS: e.pki.clientTLS(t)})
	t.Cleanup(c.Close)
	connect(t, c)
	sess := <-e.be.connected
	echo(t, c, 1, 64)

	// Someone else sends the session's peer id from another address: not authentic, nothing moves.
	forged, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 4)}, server)
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	id := sess.PeerID()
	forged.Write(append([]byte{9<<3 | 0, byte(id >> 16), byte(id >> 8), byte(id)}, make([]byte, 40)...))
	echo(t, c, 2, 64)
	if got := e.srv.Stats().Floated; got != 0 {
		t.Fatalf("%d sessions floated on a forged packet", got)
	}

	for i, from := range []string{"127.0.0.3", "127.0.0.3", "127.0.0.1"} {
		now := fc.moveTo(t, from)
		echo(t, c, uint16(10+i), 64)
		if got := sess.Remote(); got != now {
			t.Fatalf("move %d: session at %v, want the client's new address %v", i, got, now)
		}
	}
	if st := e.srv.Stats(); st.Floated != 3 || st.Handshakes != 1 || st.ActiveSessions != 1 {
		t.Fatalf("stats %+v, want 3 floats of the one session", st)
	}
	if len(e.be.connected) != 0 {
		t.Fatal("a second session connected")
	}
}
