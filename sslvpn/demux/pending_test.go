package demux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/tests/lab"
)

// limitLab is a Demux with small bounds on a loopback listener. Its OpenVPN handler reads the client's name (8
// bytes after the 3 sniffed ones), logs in the clients whose name says "login", and reports arrivals and
// departures by name, but for those named "flood".
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
		Rejected: func(_ net.Addr, err error) {
			select {
			case l.rejected <- err:
			default: // a flood's; the tests that count them make fewer
			}
		}})
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
			if name == "flood" {
				_, _ = io.Copy(io.Discard, c)
				return
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

// A source at its bound has its own oldest connection closed for its newest; its other ones and other sources
// are served, and a login frees a place. (Until the shedding policy was shared, the newest was refused.)
func TestPerSourceBoundShedsTheSourcesOldest(t *testing.T) {
	l := newLimitLab(t, 100, 2)
	a := l.dial("127.0.0.2", "a")
	l.expect(l.arrived, "served", "a")
	b := l.dial("127.0.0.2", "b")
	l.expect(l.arrived, "served", "b")
	c := l.dial("127.0.0.2", "c")
	l.expect(l.gone, "the source's oldest closed for its third", "a")
	l.expect(l.arrived, "the newest served", "c")
	expectClosed(t, a, "the oldest connection of a source bounded to 2")
	d := l.dial("127.0.0.3", "d")
	l.expect(l.arrived, "served from another source", "d")
	l.quiet("after the eviction")
	expectOpen(t, b, "the source's second connection")
	expectOpen(t, c, "the source's newest connection")
	if st := l.d.Stats(); st.Pending != 3 || st.Evicted != 1 {
		t.Errorf("stats %+v, want 3 pending and 1 evicted", st)
	}

	// A login no longer counts: the source may open another without losing one.
	b.Close()
	l.expect(l.gone, "closed", "b")
	l.dial("127.0.0.2", "e-login")
	l.expect(l.arrived, "served", "e-login")
	l.dial("127.0.0.2", "f")
	l.expect(l.arrived, "served next to a logged-in one", "f")
	l.quiet("within the source's bound again")
	expectOpen(t, c, "the source's connection still waiting")
	expectOpen(t, d, "the other source's connection")
}

// At the global bound the source holding the most gives its oldest waiting connection, undecided or not; a
// source holding one keeps it though it is the oldest of all, and logged-in connections never count. (Until
// the shedding policy was shared, the oldest waiting connection overall went, an undecided one first.)
func TestGlobalBoundShedsTheBiggestSourcesOldest(t *testing.T) {
	l := newLimitLab(t, 4, 10)
	user := l.dial("127.0.0.5", "user")
	l.expect(l.arrived, "served", "user")
	idle := l.dial("127.0.0.2", "") // connects and says nothing
	f1 := l.dial("127.0.0.2", "f1")
	l.expect(l.arrived, "served", "f1")
	// A logged-in client stops counting and is never evicted, however old.
	lg := l.dial("127.0.0.4", "login")
	l.expect(l.arrived, "served", "login")
	f2 := l.dial("127.0.0.2", "f2")
	l.expect(l.arrived, "served", "f2")
	waitStats(t, l.d, func(st Stats) bool { return st.Pending == 4 && st.Undecided == 1 })

	// Full: a newcomer pushes out the oldest of 127.0.0.2, which holds three.
	n1 := l.dial("127.0.0.3", "n1")
	expectClosed(t, idle, "the biggest source's oldest connection at the bound")
	l.expectRejected(ErrEvicted)
	l.expect(l.arrived, "the newcomer served", "n1")
	// Then its next oldest: 127.0.0.2 still holds the most.
	n2 := l.dial("127.0.0.3", "n2")
	l.expect(l.gone, "evicted", "f1")
	l.expect(l.arrived, "served", "n2")
	// Now 127.0.0.3 holds the most, and its own oldest goes.
	l.dial("127.0.0.3", "n3")
	l.expect(l.gone, "evicted", "n1")
	l.expect(l.arrived, "served", "n3")
	l.quiet("after three evictions")
	expectClosed(t, f1, "the biggest source's next oldest")
	expectClosed(t, n1, "the oldest of the source that came to hold the most")
	for _, c := range []net.Conn{user, lg, f2, n2} {
		expectOpen(t, c, "the only connection of its source, or a logged-in one, or a younger one")
	}
	if st := l.d.Stats(); st.Pending != 4 || st.Evicted != 3 || st.Undecided != 0 {
		t.Errorf("stats %+v, want 4 pending and 3 evicted", st)
	}
}

// A flood from more sources than the global bound holds at the per-source bound, each reconnecting at once when
// closed, keeps the table full and churning; a user's connection from another source, decided and waiting for
// its login, outlives it. With the oldest waiting connection evicted overall, it would be the first to go.
func TestManySourcesFloodSparesAUser(t *testing.T) {
	const max, perSource, sources, dials = 16, 4, 8, 600
	l := newLimitLab(t, max, perSource)
	user := l.dial("127.0.0.2", "user")
	l.expect(l.arrived, "served", "user")

	var wg sync.WaitGroup
	var mu sync.Mutex
	left, open, failed := dials, map[net.Conn]bool{}, error(nil)
	for i := range sources * perSource {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%sources))}
			for {
				mu.Lock()
				if left == 0 || failed != nil {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				c, err := (&net.Dialer{LocalAddr: src, Timeout: 2 * time.Second}).Dial("tcp", l.addr)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				mu.Lock()
				open[c] = true
				mu.Unlock()
				// Hold the connection until the server closes it, as a stalled client does.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(append([]byte{0x00, 0x0e, 0x38}, "flood   "...)); err == nil {
					_, _ = c.Read(make([]byte, 1))
				}
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				c.Close()
			}
		}()
	}
	// Once every connection is made, and each beyond the bound has made room, the ones still held are let go.
	want := uint64(dials + 1 - max)
	if err := lab.WaitFor(lab.Within(t, 30*time.Second), 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if st := l.d.Stats(); failed == nil && (left > 0 || st.Evicted < want) {
			return fmt.Errorf("%d connections still to make, %d evicted of %d", left, st.Evicted, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st := l.d.Stats()
	mu.Lock()
	for c := range open {
		c.SetReadDeadline(time.Now())
	}
	mu.Unlock()
	wg.Wait()
	if failed != nil {
		t.Fatalf("the flood: %v", failed)
	}
	t.Logf("flood: %d connections from %d sources; stats %+v", dials, sources, st)
	if st.Evicted != want || st.Pending != max {
		t.Errorf("stats %+v: want the table full and every connection beyond it evicted", st)
	}
	expectOpen(t, user, "the user's connection, the only one of its source")
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
// each one the shedding policy picks (its source's oldest at the per-source bound, else the oldest of a source
// holding the most), and every evicted connection is closed.
func FuzzPendingTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 0, 0, 0, 4, 5, 6, 7, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 8, 0, 9, 0, 10, 0, 11, 0, 12, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const bound, perSource = 4, 3
		d := New(Options{MaxPending: bound, MaxPendingPerSource: perSource})
		type conn struct {
			w    *waiting
			c    *fakeConn
			src  int
			seq  int  // order of arrival
			done bool // released by a login or its handler's return
		}
		var conns []*conn
		var live []*conn // waiting, oldest first: the model of the table
		for _, op := range ops {
			k := int(op >> 2)
			switch op & 3 {
			case 0: // a connection from source k%4
				src := k % 4
				held, before := map[int]int{}, len(live)
				biggest := 0
				for _, c := range live {
					held[c.src]++
					biggest = max(biggest, held[c.src])
				}
				fc := &fakeConn{}
				w := d.admit(fc, netip.AddrFrom4([4]byte{192, 0, 2, byte(src)}))
				var victims []*conn
				live = slices.DeleteFunc(live, func(c *conn) bool {
					if c.w.evicted {
						victims = append(victims, c)
					}
					return c.w.evicted
				})
				switch {
				case held[src] >= perSource:
					if len(victims) != 1 || victims[0].src != src {
						t.Fatalf("a source at its bound: %d evicted, want its own oldest", len(victims))
					}
				case before == bound:
					if len(victims) != 1 || held[victims[0].src] != biggest {
						t.Fatalf("at the bound: %d evicted, want one of a source holding %d", len(victims), biggest)
					}
				case len(victims) != 0:
					t.Fatalf("within the bounds: %d evicted", len(victims))
				}
				for _, v := range victims {
					if i := slices.IndexFunc(live, func(c *conn) bool { return c.src == v.src }); i >= 0 && live[i].seq < v.seq {
						t.Fatal("evicted a connection of a source that has an older one waiting")
					}
				}
				c := &conn{w: w, c: fc, src: src, seq: len(conns)}
				conns, live = append(conns, c), append(live, c)
			case 1: // first bytes
				if len(conns) > 0 {
					d.decide(conns[k%len(conns)].w)
				}
			case 2, 3: // a login, or the handler returning
				if len(conns) > 0 {
					c := conns[k%len(conns)]
					d.release(c.w)
					c.done = true
					live = slices.DeleteFunc(live, func(l *conn) bool { return l == c })
				}
			}
			st := d.Stats()
			if st.Pending > bound || st.Pending != len(live) {
				t.Fatalf("%d waiting (%d in the model), bound %d", st.Pending, len(live), bound)
			}
			held, undecided := map[int]int{}, 0
			for _, c := range live {
				if held[c.src]++; held[c.src] > perSource {
					t.Fatalf("source %d holds %d", c.src, held[c.src])
				}
				if !c.w.decided {
					undecided++
				}
			}
			if undecided != st.Undecided {
				t.Fatalf("%d undecided, %d in the model", st.Undecided, undecided)
			}
			for _, c := range conns {
				if c.w.evicted != c.c.closed {
					t.Fatalf("evicted=%v closed=%v", c.w.evicted, c.c.closed)
				}
				if c.w.evicted && c.done && c.w.entry != nil {
					t.Fatal("an evicted connection is still listed")
				}
			}
		}
	})
}
