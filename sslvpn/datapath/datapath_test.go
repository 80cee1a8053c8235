package datapath

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"toride/dataplane/tun"
	"toride/dataplane/tun/tuntest"
	"toride/sslvpn/internal/icmptest"
)

// recorder is a Peer that keeps copies of what it is sent, or refuses everything when full.
type recorder struct {
	mu   sync.Mutex
	got  [][]byte
	full bool
}

func (r *recorder) SendPacket(pkt []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return false
	}
	r.got = append(r.got, append([]byte(nil), pkt...))
	return true
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

var (
	server = netip.MustParseAddr("10.8.0.1")
	alice  = netip.MustParseAddr("10.8.0.2")
	bob    = netip.MustParseAddr("10.8.0.3")
)

// ping is an ICMP echo request from src to dst.
func ping(dst, src netip.Addr) []byte { return icmptest.EchoRequest(src, dst, 1, 4) }

func deliver(t *testing.T, dev *tuntest.Device, pkt []byte) {
	t.Helper()
	if err := dev.Deliver(pkt); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRoutingAndAntiSpoofing(t *testing.T) {
	before := runtime.NumGoroutine()
	dev := tuntest.NewDevice("vpn-test", 1500)
	d, err := New(dev, Options{Buffers: 8})
	if err != nil {
		t.Fatal(err)
	}
	a, b := &recorder{}, &recorder{}
	ua, err := d.Attach(alice, a, everywhere)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Attach(alice, b, everywhere); !errors.Is(err, ErrInUse) {
		t.Fatalf("second attach of one address: %v", err)
	}
	if _, err := d.Attach(bob, b, everywhere); err != nil {
		t.Fatal(err)
	}

	// LAN → clients, by destination.
	deliver(t, dev, ping(alice, server))
	deliver(t, dev, ping(bob, server))
	deliver(t, dev, ping(netip.MustParseAddr("10.8.0.9"), server))
	waitFor(t, "delivery", func() bool { return a.count() == 1 && b.count() == 1 && d.Stats().NoRoute == 1 })

	// Client → LAN: alice's own source passes, bob's address from alice's session does not. The packet is
	// held until the engine flushes.
	if err := ua.WritePacket(ping(server, alice)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-dev.Written:
		t.Fatalf("wrote %x before the flush", got)
	case <-time.After(20 * time.Millisecond):
	}
	ua.Flush()
	select {
	case got := <-dev.Written:
		if netip.AddrFrom4([4]byte(got[12:16])) != alice {
			t.Fatalf("wrote a packet from %v", got[12:16])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("uplink packet never reached the TUN device")
	}
	if err := ua.WritePacket(ping(server, bob)); !errors.Is(err, ErrSpoofed) {
		t.Fatalf("spoofed packet: %v", err)
	}
	if err := ua.WritePacket([]byte{0x60, 0, 0, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("junk: %v", err)
	}

	// A full session drops and counts without holding up the others.
	a.mu.Lock()
	a.full = true
	a.mu.Unlock()
	for range 3 {
		deliver(t, dev, ping(alice, server))
	}
	deliver(t, dev, ping(bob, server))
	waitFor(t, "drops", func() bool { return d.Stats().SessionDrop == 3 && b.count() == 2 })

	// Detached: no more delivery.
	d.Detach(alice, a)
	deliver(t, dev, ping(alice, server))
	waitFor(t, "no route", func() bool { return d.Stats().NoRoute == 2 })

	st := d.Stats()
	if st.Spoofed != 1 || st.Malformed != 1 || st.FromClients != 1 || st.ToClients != 3 {
		t.Fatalf("stats %+v", st)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_ = d.Close() // idempotent
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestUplinkHoldsUntilFlushOrAFullBatch: an uplink hands its packets to the writer at Flush, or when it holds a
// full batch; a write that finds the pool lent out is refused and counted, never blocked; so is a packet the
// writer's full queue cannot take at the flush (the test device's writes wait for the test: a stalled kernel).
func TestUplinkHoldsUntilFlushOrAFullBatch(t *testing.T) {
	dev := tuntest.NewDevice("vpn-test", 1500)
	d, err := New(dev, Options{Buffers: 8, Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	u, _ := d.Attach(alice, &recorder{}, everywhere)
	// The first packet stalls the writer in its write.
	if err := u.WritePacket(ping(server, alice)); err != nil {
		t.Fatal(err)
	}
	u.Flush()
	waitFor(t, "the writer to take the first packet", func() bool { return len(d.queue) == 0 })
	var refused int
	for range 20 {
		if err := u.WritePacket(ping(server, alice)); err != nil {
			refused++
			if !errors.Is(err, ErrNoBuffer) {
				t.Fatal(err)
			}
		}
	}
	if refused != 13 || d.Stats().QueueFull != 13 {
		t.Fatalf("%d of 20 refused, counted %d; want the pool of 8 to hold 7 more and refuse 13", refused, d.Stats().QueueFull)
	}
	// The stalled writer's queue takes two of the seven held: five are dropped at the flush.
	u.Flush()
	if d.Stats().QueueFull != 13+5 {
		t.Fatalf("counted %d, want 18 after the flush", d.Stats().QueueFull)
	}
	for i := range 3 {
		select {
		case <-dev.Written:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of 3 queued packets written", i)
		}
	}
	select {
	case got := <-dev.Written:
		t.Fatalf("a dropped packet was written: %x", got)
	case <-time.After(20 * time.Millisecond):
	}
	waitFor(t, "the pool to be whole again", func() bool { return len(d.free) == 8 })

	// A full batch goes without a flush.
	big, err := New(dev, Options{Buffers: 2 * tuntest.BatchSize})
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	ub, _ := big.Attach(bob, &recorder{}, everywhere)
	for range tuntest.BatchSize {
		if err := ub.WritePacket(ping(server, bob)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range tuntest.BatchSize {
		select {
		case <-dev.Written:
		case <-time.After(5 * time.Second):
			t.Fatalf("a full batch was not written: %d of %d packets", i, tuntest.BatchSize)
		}
	}
}

// discardTUN is a TUN device that swallows writes and reads nothing, for benchmarks.
type discardTUN struct {
	closed chan struct{}
	events chan tun.Event
	writes atomic.Uint64
}

func newDiscardTUN() *discardTUN {
	return &discardTUN{closed: make(chan struct{}), events: make(chan tun.Event)}
}

func (t *discardTUN) File() *os.File { return nil }
func (t *discardTUN) Read([][]byte, []int, int) (int, error) {
	<-t.closed
	return 0, os.ErrClosed
}
func (t *discardTUN) Write(bufs [][]byte, _ int) (int, error) {
	t.writes.Add(uint64(len(bufs)))
	return len(bufs), nil
}
func (t *discardTUN) MTU() (int, error)        { return 1500, nil }
func (t *discardTUN) Name() (string, error)    { return "discard0", nil }
func (t *discardTUN) Events() <-chan tun.Event { return t.events }
func (t *discardTUN) BatchSize() int           { return 64 }
func (t *discardTUN) Close() error             { close(t.closed); return nil }

type nopPeer struct{}

func (nopPeer) SendPacket([]byte) bool { return true }

func packetOf(size int, src, dst netip.Addr) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	return p
}

// BenchmarkUplink: client packets into the TUN writer (anti-spoofing and reach checks, copy, a flush per batch,
// the writer's batched write).
func BenchmarkUplink(b *testing.B) {
	dt := newDiscardTUN()
	d, _ := New(dt, Options{})
	defer d.Close()
	u, _ := d.Attach(alice, nopPeer{}, everywhere)
	pkt := packetOf(1400, alice, server)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		for u.WritePacket(pkt) != nil {
			runtime.Gosched() // the pool is lent out: let the writer return buffers
		}
	}
	u.Flush()
}

// BenchmarkDownlinkLookup: a packet read from TUN to its session among 250.
func BenchmarkDownlinkLookup(b *testing.B) {
	dt := newDiscardTUN()
	d, _ := New(dt, Options{})
	defer d.Close()
	base := netip.MustParseAddr("10.8.0.2")
	addr := base
	for range 250 {
		if _, err := d.Attach(addr, nopPeer{}, everywhere); err != nil {
			b.Fatal(err)
		}
		addr = addr.Next()
	}
	pkt := packetOf(1400, server, netip.MustParseAddr("10.8.0.77"))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		d.route(pkt)
	}
}

func TestHotPathsAllocateNothing(t *testing.T) {
	dt := newDiscardTUN()
	d, _ := New(dt, Options{})
	defer d.Close()
	u, _ := d.Attach(alice, nopPeer{}, everywhere)
	up := packetOf(1400, alice, server)
	down := packetOf(1400, server, alice)
	if n := testing.AllocsPerRun(1000, func() {
		for u.WritePacket(up) != nil {
			runtime.Gosched()
		}
		d.route(down)
	}); n != 0 {
		t.Fatalf("%v allocations per packet, want 0", n)
	}
}

// everywhere lets a session send anywhere, for the tests of other things than its reach.
var everywhere = NewReach([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, nil)

// TestReach: a session sends only to what it was given: its network and its name server, not another network
// behind the box, not another client of the pool (even inside a given network, as with a full tunnel); each
// refusal is counted on the session; the server's own tunnel address, given inside the pool, is reachable; and the device; a new Reach applies to the live session at once.
func TestReach(t *testing.T) {
	dev := tuntest.NewDevice("vpn-test", 1500)
	d, err := New(dev, Options{Buffers: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pool := []netip.Prefix{netip.MustParsePrefix("10.8.0.0/24")}
	given := NewReach([]netip.Prefix{netip.MustParsePrefix("10.50.0.0/24"), netip.MustParsePrefix("192.0.2.53/32"),
		netip.MustParsePrefix("10.8.0.1/32")}, pool)
	u, err := d.Attach(alice, &recorder{}, given)
	if err != nil {
		t.Fatal(err)
	}
	send := func(dst string) error { return u.WritePacket(ping(netip.MustParseAddr(dst), alice)) }
	for _, dst := range []string{"10.50.0.7", "192.0.2.53", "10.8.0.1"} {
		if err := send(dst); err != nil {
			t.Errorf("to %s, a given destination: %v", dst, err)
		}
	}
	for _, dst := range []string{"10.60.0.7", "192.0.2.54", "10.8.0.9", "172.16.0.1"} {
		if err := send(dst); !errors.Is(err, ErrForbidden) {
			t.Errorf("to %s, not given: %v", dst, err)
		}
	}
	if u.Forbidden() != 4 || d.Stats().Forbidden != 4 {
		t.Errorf("forbidden: session %d, device %d; want 4 and 4", u.Forbidden(), d.Stats().Forbidden)
	}
	// A full tunnel reaches everything but the other clients.
	u.SetReach(NewReach([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, pool))
	if err := send("10.60.0.7"); err != nil {
		t.Errorf("full tunnel to 10.60.0.7: %v", err)
	}
	if err := send("10.8.0.9"); !errors.Is(err, ErrForbidden) {
		t.Errorf("full tunnel to another client: %v", err)
	}
	// A session attached without a Reach sends nowhere.
	nowhere, err := d.Attach(bob, &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := nowhere.WritePacket(ping(server, bob)); !errors.Is(err, ErrForbidden) {
		t.Errorf("no reach: %v", err)
	}
}

// BenchmarkReach is the cost of the destination check on the uplink's path.
func BenchmarkReach(b *testing.B) {
	r := NewReach([]netip.Prefix{netip.MustParsePrefix("10.50.0.0/24"), netip.MustParsePrefix("10.60.0.0/16"),
		netip.MustParsePrefix("192.0.2.53/32")}, []netip.Prefix{netip.MustParsePrefix("10.8.0.0/24")})
	a := netip.MustParseAddr("10.60.3.4")
	b.ReportAllocs()
	for b.Loop() {
		if !r.Contains(a) {
			b.Fatal("not contained")
		}
	}
}
