package demux

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// limitLab is a Demux with small bounds on a loopback listener. Its OpenVPN handler reads the client's name (8
// bytes after the 3 sniffed ones), logs in the clients whose name says "login", and reports arrivals and
// departures by name.
type limitLab struct {
	t        *testing.T
	d        *Demux
	addr     string
	arrived  chan string
	gone     chan string
	rejected chan error
}

func newLimitLab(t *testing.T, max, perSource int) *limitLab {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &limitLab{t: t, addr: ln.Addr().String(), arrived: make(chan string, 64), gone: make(chan string, 64), rejected: make(chan error, 64)}
	l.d = New(Options{MaxPending: max, MaxPendingPerSource: perSource, FirstBytesTimeout: 10 * time.Second,
		Rejected: func(_ net.Addr, err error) { l.rejected <- err }})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- l.d.Serve(ctx, ln, map[Protocol]Handler{OpenVPNTCP: func(_ context.Context, c net.Conn) {
			defer c.Close()
			b := make([]byte, 3+8)
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			name := strings.TrimRight(string(b[3:]), " ")
			if strings.Contains(name, "login") {
				c.(Authenticator).Authenticated()
			}
			l.arrived <- name
			_, _ = io.Copy(io.Discard, c)
			l.gone <- name
		}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return l
}

// dial connects from a loopback source (all of 127.0.0.0/8 is local) and, unless name is empty, sends an
// OpenVPN-looking first packet carrying name.
func (l *limitLab) dial(src, name string) net.Conn {
	l.t.Helper()
	dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := dl.Dial("tcp", l.addr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	if name != "" {
		if _, err := c.Write(append([]byte{0x00, 0x0e, 0x38}, []byte((name + "        ")[:8])...)); err != nil {
			l.t.Fatal(err)
		}
	}
	return c
}

func (l *limitLab) expect(ch chan string, what, want string) {
	l.t.Helper()
	select {
	case got := <-ch:
		if got != want {
			l.t.Fatalf("%s %q, want %q", what, got, want)
		}
	case <-time.After(5 * time.Second):
		l.t.Fatalf("%s: nothing within 5s, want %q", what, want)
	}
}

func (l *limitLab) expectRejected(want error) {
	l.t.Helper()
	select {
	case err := <-l.rejected:
		if !errors.Is(err, want) {
			l.t.Fatalf("rejected with %v, want %v", err, want)
		}
	case <-time.After(5 * time.Second):
		l.t.Fatalf("no connection rejected within 5s, want %v", want)
	}
}

// expectClosed waits for the server to close c (the client reads EOF or a reset).
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: still open (%v)", what, err)
	}
}

// expectOpen checks that the server has not closed c within a short while.
func expectOpen(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: closed by the server (%v)", what, err)
	}
}

func (l *limitLab) quiet(what string) {
	l.t.Helper()
	select {
	case name := <-l.gone:
		l.t.Fatalf("%s: %s was closed", what, name)
	case err := <-l.rejected:
		l.t.Fatalf("%s: a connection was rejected: %v", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

// A source at its bound gets its newest connection closed; its older ones and other sources are served, and a
// login frees a place.
func TestPerSourceBoundRefusesTheNewest(t *testing.T) {
	l := newLimitLab(t, 100, 2)
	a := l.dial("127.0.0.2", "a")
	l.expect(l.arrived, "served", "a")
	b := l.dial("127.0.0.2", "b")
	l.expect(l.arrived, "served", "b")
	c := l.dial("127.0.0.2", "c")
	expectClosed(t, c, "a third connection from a source bounded to 2")
	l.expectRejected(ErrSourceBusy)
	d := l.dial("127.0.0.3", "d")
	l.expect(l.arrived, "served from another source", "d")
	l.quiet("after the refusal")
	expectOpen(t, a, "the source's first connection")
	expectOpen(t, b, "the source's second connection")
	if st := l.d.Stats(); st.Pending != 3 || st.SourceRefused != 1 || st.Evicted != 0 {
		t.Errorf("stats %+v, want 3 pending and 1 refused for its source", st)
	}

	// A login no longer counts: the source may open another.
	b.Close()
	l.expect(l.gone, "closed", "b")
	l.dial("127.0.0.2", "e-login")
	l.expect(l.arrived, "served", "e-login")
	l.dial("127.0.0.2", "f")
	l.expect(l.arrived, "served next to a logged-in one", "f")
	expectOpen(t, d, "the other source's connection")
}

// At the global bound the oldest waiting connection goes, an undecided one first; logged-in connections never.
func TestGlobalBoundEvictsTheOldestWaiting(t *testing.T) {
	l := newLimitLab(t, 3, 10)
	idle := l.dial("127.0.0.2", "") // connects and says nothing
	d1 := l.dial("127.0.0.2", "d1")
	l.expect(l.arrived, "served", "d1")
	// A logged-in client stops counting and is never evicted, however old.
	lg := l.dial("127.0.0.4", "login")
	l.expect(l.arrived, "served", "login")
	d2 := l.dial("127.0.0.2", "d2")
	l.expect(l.arrived, "served", "d2")
	waitStats(t, l.d, func(st Stats) bool { return st.Pending == 3 && st.Undecided == 1 })

	// Full: a newcomer pushes out the idle undecided connection, not the older decided ones.
	n1 := l.dial("127.0.0.3", "n1")
	expectClosed(t, idle, "the oldest undecided connection at the bound")
	l.expectRejected(ErrEvicted)
	l.expect(l.arrived, "the newcomer served", "n1")
	l.quiet("after evicting the undecided one")
	expectOpen(t, d1, "the oldest decided connection, while an undecided one could go")

	// Full again (d1, d2, n1 waiting): the oldest decided one goes next.
	l.dial("127.0.0.3", "n2")
	l.expect(l.gone, "evicted", "d1")
	l.expect(l.arrived, "served", "n2")
	expectClosed(t, d1, "the oldest waiting connection")
	for _, c := range []net.Conn{d2, n1, lg} {
		expectOpen(t, c, "a younger or logged-in connection")
	}
	if st := l.d.Stats(); st.Pending != 3 || st.Evicted != 2 || st.SourceRefused != 0 {
		t.Errorf("stats %+v, want 3 pending and 2 evicted", st)
	}
}

func waitStats(t *testing.T, d *Demux, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(d.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", d.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeConn is a connection that only records its closing.
type fakeConn struct {
	net.Conn
	mu     sync.Mutex
	closed bool
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// FuzzPendingTable drives the table of waiting connections with arbitrary sequences of arrivals (from four
// sources), first bytes, logins and departures: the bounds always hold, only waiting connections are evicted,
// undecided ones first, and every evicted connection is closed.
func FuzzPendingTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 0, 0, 0, 4, 5, 6, 7, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 8, 0, 9, 0, 10, 0, 11, 0, 12, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const max, perSource = 4, 3
		d := New(Options{MaxPending: max, MaxPendingPerSource: perSource})
		type conn struct {
			w    *waiting
			c    *fakeConn
			done bool // released by a login or its handler's return
		}
		var conns []*conn
		for _, op := range ops {
			k := int(op >> 2)
			switch op & 3 {
			case 0: // a connection from source k%4
				src := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(k % 4)}), 32)
				before := d.Stats()
				fc := &fakeConn{}
				w := d.admit(fc, src)
				if w == nil {
					if d.bySource[src] < perSource {
						t.Fatalf("refused a connection from a source with %d waiting", d.bySource[src])
					}
					continue
				}
				if before.Pending == max && before.Undecided > 0 && d.Stats().Undecided != before.Undecided {
					t.Fatal("evicted a decided connection while an undecided one waited")
				}
				conns = append(conns, &conn{w: w, c: fc})
			case 1: // first bytes
				if len(conns) > 0 {
					d.decide(conns[k%len(conns)].w)
				}
			case 2, 3: // a login, or the handler returning
				if len(conns) > 0 {
					c := conns[k%len(conns)]
					d.release(c.w)
					c.done = true
				}
			}
			st := d.Stats()
			if st.Pending > max {
				t.Fatalf("%d waiting, bound %d", st.Pending, max)
			}
			counted := 0
			for src, n := range d.bySource {
				if n > perSource || n <= 0 {
					t.Fatalf("source %s counts %d", src, n)
				}
				counted += n
			}
			if counted != st.Pending {
				t.Fatalf("per-source counts add up to %d, %d waiting", counted, st.Pending)
			}
			for _, c := range conns {
				if c.w.evicted != c.c.closed {
					t.Fatalf("evicted=%v closed=%v", c.w.evicted, c.c.closed)
				}
				if c.w.evicted && c.done && c.w.in != nil {
					t.Fatal("an evicted connection is still listed")
				}
			}
		}
	})
}
