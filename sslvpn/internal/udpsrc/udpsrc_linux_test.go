package udpsrc_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"toride/sslvpn/internal/udpsrc"
)

// fakeConn is a packet connection that hands out one queued datagram per read and records, for every write,
// the source the control message asked for (decoded by x/net, not by the code under test).
type fakeConn struct {
	net.PacketConn
	mu     sync.Mutex
	in     [][2][]byte // payload, control messages
	from   netip.AddrPort
	writes []fakeWrite
}

type fakeWrite struct {
	To      netip.AddrPort
	Src     netip.Addr
	Ifindex int
	Payload string
}

func (f *fakeConn) ReadMsgUDPAddrPort(b, oob []byte) (int, int, int, netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.in) == 0 {
		return 0, 0, 0, netip.AddrPort{}, errors.New("no datagram")
	}
	d := f.in[0]
	f.in = f.in[1:]
	return copy(b, d[0]), copy(oob, d[1]), 0, f.from, nil
}

func (f *fakeConn) WriteMsgUDPAddrPort(b, oob []byte, to netip.AddrPort) (int, int, error) {
	w := fakeWrite{To: to, Payload: string(b)}
	if len(oob) > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil || len(msgs) != 1 {
			return 0, 0, fmt.Errorf("control messages %x: %v", oob, err)
		}
		m := msgs[0]
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			w.Src, w.Ifindex = netip.AddrFrom4(info.Spec_dst), int(info.Ifindex)
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			w.Src, w.Ifindex = netip.AddrFrom16(info.Addr), int(info.Ifindex)
		default:
			return 0, 0, fmt.Errorf("control message %x is no packet info", oob)
		}
	}
	f.mu.Lock()
	f.writes = append(f.writes, w)
	f.mu.Unlock()
	return len(b), len(oob), nil
}

// pktinfo4 is an IP_PKTINFO message as the kernel gives it, made with x/sys's structures.
func pktinfo4(specDst, dst string, ifindex int) []byte {
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	info.Ifindex = int32(ifindex)
	info.Spec_dst = netip.MustParseAddr(specDst).As4()
	info.Addr = netip.MustParseAddr(dst).As4()
	return b
}

// pktinfo6 is an IPV6_PKTINFO message.
func pktinfo6(dst string, ifindex int) []byte {
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	info.Ifindex = uint32(ifindex)
	info.Addr = netip.MustParseAddr(dst).As16()
	return b
}

func TestWriteToSetsSource(t *testing.T) {
	f := &fakeConn{}
	c, err := udpsrc.New(f)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		to    netip.AddrPort
		local udpsrc.Local
	}{
		{"ipv4", netip.MustParseAddrPort("198.18.0.7:5000"), udpsrc.Local{Addr: netip.MustParseAddr("203.0.113.1"), Ifindex: 3}},
		{"ipv4 mapped destination", netip.MustParseAddrPort("[::ffff:198.18.0.7]:5000"), udpsrc.Local{Addr: netip.MustParseAddr("203.0.113.1")}},
		{"ipv6", netip.MustParseAddrPort("[2001:db8::7]:5000"), udpsrc.Local{Addr: netip.MustParseAddr("2001:db8:1::1"), Ifindex: 7}},
		{"unknown local", netip.MustParseAddrPort("198.18.0.7:5000"), udpsrc.Local{}},
	}
	var want []fakeWrite
	for _, tc := range cases {
		if _, err := c.WriteTo([]byte(tc.name), tc.to, tc.local); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want = append(want, fakeWrite{To: tc.to, Src: tc.local.Addr, Ifindex: tc.local.Ifindex, Payload: tc.name})
	}
	if d := cmp.Diff(f.writes, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("writes (-got +want):\n%s", d)
	}
}

func TestReadFromReturnsLocal(t *testing.T) {
	v4 := pktinfo4("203.0.113.1", "203.0.113.1", 4)
	v6 := pktinfo6("2001:db8:1::1", 5)
	mapped := pktinfo6("::ffff:203.0.113.1", 6)
	f := &fakeConn{from: netip.MustParseAddrPort("[::ffff:198.18.0.7]:5000"),
		in: [][2][]byte{{[]byte("a"), v4}, {[]byte("b"), v6}, {[]byte("c"), mapped}, {[]byte("d"), nil}}}
	c, _ := udpsrc.New(f)
	want := []udpsrc.Local{
		{Addr: netip.MustParseAddr("203.0.113.1"), Ifindex: 4},
		{Addr: netip.MustParseAddr("2001:db8:1::1"), Ifindex: 5},
		{Addr: netip.MustParseAddr("203.0.113.1"), Ifindex: 6},
		{},
	}
	buf := make([]byte, 100)
	for i, w := range want {
		n, from, l, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from != netip.MustParseAddrPort("198.18.0.7:5000") || n != 1 {
			t.Errorf("datagram %d: %d bytes from %v, want 1 from the unmapped sender", i, n, from)
		}
		if l != w {
			t.Errorf("datagram %d: local %+v, want %+v", i, l, w)
		}
	}
}

func TestParseControl(t *testing.T) {
	v4 := pktinfo4("203.0.113.1", "203.0.113.255", 4) // a broadcast: answered from the address routed to
	v6 := pktinfo6("2001:db8:1::1", 5)
	other := (&ipv6.ControlMessage{HopLimit: 9}).Marshal()
	cases := []struct {
		name    string
		oob     []byte
		want    udpsrc.Local
		wantErr bool
	}{
		{"empty", nil, udpsrc.Local{}, false},
		{"ipv4", v4, udpsrc.Local{Addr: netip.MustParseAddr("203.0.113.1"), Ifindex: 4}, false},
		{"ipv6 after another message", append(append([]byte(nil), other...), v6...), udpsrc.Local{Addr: netip.MustParseAddr("2001:db8:1::1"), Ifindex: 5}, false},
		{"ipv4 wins over ipv6", append(append([]byte(nil), v6...), v4...), udpsrc.Local{Addr: netip.MustParseAddr("203.0.113.1"), Ifindex: 4}, false},
		{"truncated header", v4[:5], udpsrc.Local{}, true},
		{"length beyond buffer", v4[:len(v4)-8], udpsrc.Local{}, true},
	}
	for _, tc := range cases {
		got, err := udpsrc.ParseControl(tc.oob)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: got %+v, %v; want %+v, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
		if tc.wantErr && !errors.Is(err, udpsrc.ErrControl) {
			t.Errorf("%s: error %v is not ErrControl", tc.name, err)
		}
	}
}

// loopbackPair is a server Conn on the wildcard address of network and a client bound to 127.0.0.1 and
// connected to 127.0.0.2 (both are the loopback's own), so it takes answers from 127.0.0.2 alone, while the
// kernel's preferred source towards 127.0.0.1 is 127.0.0.1.
func loopbackPair(t testing.TB, network string) (*udpsrc.Conn, *net.UDPConn) {
	t.Helper()
	pc, err := net.ListenPacket(network, ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := udpsrc.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	cl, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}

func TestAnswerFromAddressDialed(t *testing.T) {
	for _, network := range []string{"udp", "udp4"} {
		t.Run(network, func(t *testing.T) {
			c, cl := loopbackPair(t, network)
			if _, err := cl.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			n, from, local, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if local.Addr != netip.MustParseAddr("127.0.0.2") || local.Ifindex == 0 {
				t.Fatalf("local end %+v, want 127.0.0.2 on the loopback", local)
			}
			if _, err := c.WriteTo(buf[:n], from, local); err != nil {
				t.Fatal(err)
			}
			cl.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, err := cl.Read(buf); err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("client got %q, %v; want the answer from 127.0.0.2", buf[:n], err)
			}
		})
	}
}

func TestNoAllocations(t *testing.T) {
	c, cl := loopbackPair(t, "udp")
	buf := make([]byte, 1500)
	cbuf := make([]byte, 1500)
	allocs := testing.AllocsPerRun(100, func() { roundTrip(t, c, cl, buf, cbuf) })
	if allocs != 0 {
		t.Errorf("%v allocations per read and answer, want 0", allocs)
	}
}

func roundTrip(t testing.TB, c *udpsrc.Conn, cl *net.UDPConn, buf, cbuf []byte) {
	if _, err := cl.Write(cbuf[:1200]); err != nil {
		t.Fatal(err)
	}
	n, from, local, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(buf[:n], from, local); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Read(cbuf); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkReadWrite measures one datagram read with its local end and answered from it, over the loopback.
func BenchmarkReadWrite(b *testing.B) {
	c, cl := loopbackPair(b, "udp")
	buf := make([]byte, 1500)
	cbuf := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(1200)
	for b.Loop() {
		roundTrip(b, c, cl, buf, cbuf)
	}
}

func FuzzParseControl(f *testing.F) {
	f.Fuzz(func(t *testing.T, oob []byte) {
		l, err := udpsrc.ParseControl(oob)
		if err != nil || !l.IsValid() {
			return
		}
		// What was read encodes to a message that reads back the same.
		fc := &fakeConn{}
		c, _ := udpsrc.New(fc)
		if _, err := c.WriteTo(nil, netip.MustParseAddrPort("192.0.2.1:1"), l); err != nil {
			t.Fatal(err)
		}
		if w := fc.writes[0]; w.Src != l.Addr || w.Ifindex != l.Ifindex {
			t.Fatalf("read %+v, wrote source %v on %d", l, w.Src, w.Ifindex)
		}
	})
}

// TestWriteBatchFromAddressDialed sends a batch of answers (one sendmmsg) from the address the client dialed, on
// a dual-stack socket and on an IPv4 one: the client, which takes datagrams from 127.0.0.2 alone, gets them all
// in order.
func TestWriteBatchFromAddressDialed(t *testing.T) {
	for _, network := range []string{"udp", "udp4"} {
		t.Run(network, func(t *testing.T) {
			c, cl := loopbackPair(t, network)
			from, local := clientHello(t, c, cl)
			var b udpsrc.Batch
			buf := make([]byte, 100)
			bufs := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
			if n, err := c.WriteBatch(&b, bufs, from, local); n != 3 || err != nil {
				t.Fatalf("WriteBatch: %d, %v; want 3 sent", n, err)
			}
			cl.SetReadDeadline(time.Now().Add(2 * time.Second))
			for _, want := range bufs {
				if n, err := cl.Read(buf); err != nil || string(buf[:n]) != string(want) {
					t.Fatalf("client got %q, %v; want %q from 127.0.0.2", buf[:n], err, want)
				}
			}
		})
	}
}

// TestWriteBatchSetsSourcePerDatagram: over a connection without batched writes (the fake), a batch is written
// datagram by datagram, each with the control message of its source.
func TestWriteBatchSetsSourcePerDatagram(t *testing.T) {
	fc := &fakeConn{}
	c, _ := udpsrc.New(fc)
	to := netip.MustParseAddrPort("198.18.0.7:5000")
	local := udpsrc.Local{Addr: netip.MustParseAddr("203.0.113.1"), Ifindex: 3}
	if n, err := c.WriteBatch(new(udpsrc.Batch), [][]byte{[]byte("a"), []byte("b")}, to, local); n != 2 || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	want := []fakeWrite{{To: to, Src: local.Addr, Ifindex: 3, Payload: "a"}, {To: to, Src: local.Addr, Ifindex: 3, Payload: "b"}}
	if len(fc.writes) != len(want) {
		t.Fatalf("writes %+v, want %+v", fc.writes, want)
	}
	for i := range want {
		if fc.writes[i] != want[i] {
			t.Errorf("write %d: %+v, want %+v", i, fc.writes[i], want[i])
		}
	}
}

func TestWriteBatchNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates in x/net's batched writes; run without -race")
	}
	c, cl := loopbackPair(t, "udp")
	from, local := clientHello(t, c, cl)
	var b udpsrc.Batch
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 1200)
	}
	cbuf := make([]byte, 1500)
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := c.WriteBatch(&b, bufs, from, local); err != nil {
			t.Fatal(err)
		}
		for range bufs {
			if _, err := cl.Read(cbuf); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

// BenchmarkWriteBatch sends datagrams of 1,200 bytes from a given source in batches of 1 (one sendmsg each) and
// of 32 (one sendmmsg), to a client that reads them; the bytes are the datagrams sent.
func BenchmarkWriteBatch(b *testing.B) {
	for _, size := range []int{1, 32} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c, cl := loopbackPair(b, "udp")
			if err := cl.SetReadBuffer(4 << 20); err != nil {
				b.Fatal(err)
			}
			from, local := clientHello(b, c, cl)
			var batch udpsrc.Batch
			buf := make([]byte, 1500)
			bufs := make([][]byte, size)
			for i := range bufs {
				bufs[i] = make([]byte, 1200)
			}
			b.ReportAllocs()
			b.SetBytes(int64(1200 * size))
			for b.Loop() {
				if _, err := c.WriteBatch(&batch, bufs, from, local); err != nil {
					b.Fatal(err)
				}
				for range bufs {
					if _, err := cl.Read(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// clientHello has the client send a datagram and returns its sender and local end as the server read them.
func clientHello(t testing.TB, c *udpsrc.Conn, cl *net.UDPConn) (netip.AddrPort, udpsrc.Local) {
	t.Helper()
	if _, err := cl.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_, from, local, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return from, local
}

// TestReadBatchTakesWhatIsQueued: datagrams queued on the socket come in one batch, in order, each with its sender
// and the address it was sent to; one longer than a buffer is dropped and counted, not cut; a batch never holds
// more than its buffers; the read deadline ends a wait.
func TestReadBatchTakesWhatIsQueued(t *testing.T) {
	for _, network := range []string{"udp", "udp4"} {
		t.Run(network, func(t *testing.T) {
			c, cl := loopbackPair(t, network)
			r := udpsrc.NewReads(4, 100)
			for _, p := range []string{"one", "two", string(make([]byte, 101)), "three", "four", "five"} {
				if _, err := cl.Write([]byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(50 * time.Millisecond) // all queued: the loopback delivers at once
			var got []string
			var truncated uint64
			for len(got) < 5 {
				n, err := c.ReadBatch(r)
				truncated += r.Truncated
				if err != nil {
					t.Fatal(err)
				}
				if n != len(r.Datagrams) || n > 4 {
					t.Fatalf("ReadBatch = %d with %d datagrams (4 buffers)", n, len(r.Datagrams))
				}
				for _, d := range r.Datagrams {
					if want := cl.LocalAddr().(*net.UDPAddr).AddrPort(); d.From != want {
						t.Fatalf("from %v, want %v", d.From, want)
					}
					if d.Local.Addr != netip.MustParseAddr("127.0.0.2") || d.Local.Ifindex == 0 {
						t.Fatalf("local end %+v, want 127.0.0.2 on the loopback", d.Local)
					}
					got = append(got, string(d.B))
				}
				if len(got) == 3 && n != 3 {
					t.Fatalf("the first batch held %d datagrams, want the 3 of 4 that fit (one too long)", n)
				}
			}
			if diff := cmp.Diff([]string{"one", "two", "three", "four", "five"}, got); diff != "" {
				t.Fatalf("datagrams (-want +got):\n%s", diff)
			}
			if truncated != 1 {
				t.Fatalf("%d truncated counted, want 1", truncated)
			}
			c.PacketConn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var ne net.Error
			if _, err := c.ReadBatch(r); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("ReadBatch past the deadline: %v, want a timeout", err)
			}
		})
	}
}

// TestReadBatchFromIPv6: a dual-stack socket reads IPv6 senders as they are and IPv4 ones unmapped.
func TestReadBatchFromIPv6(t *testing.T) {
	pc, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Skip("no IPv6:", err)
	}
	defer pc.Close()
	c, _ := udpsrc.New(pc)
	port := pc.LocalAddr().(*net.UDPAddr).Port
	cl6, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer cl6.Close()
	if _, err := cl6.Write([]byte("six")); err != nil {
		t.Fatal(err)
	}
	r := udpsrc.NewReads(2, 100)
	if _, err := c.ReadBatch(r); err != nil {
		t.Fatal(err)
	}
	d := r.Datagrams[0]
	if d.From != cl6.LocalAddr().(*net.UDPAddr).AddrPort() || d.Local.Addr != netip.IPv6Loopback() || string(d.B) != "six" {
		t.Fatalf("got %+v %q from %v", d.Local, d.B, d.From)
	}
}

// TestReadBatchNoAllocations: a batch read allocates nothing.
func TestReadBatchNoAllocations(t *testing.T) {
	c, cl := loopbackPair(t, "udp")
	r := udpsrc.NewReads(8, 1500)
	payload := make([]byte, 1200)
	allocs := testing.AllocsPerRun(100, func() { sendAndReadBatches(t, c, cl, r, payload, 4) })
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

// BenchmarkReadBatch reads datagrams 32 at a time where they are queued (the client writes them first).
func BenchmarkReadBatch(b *testing.B) {
	c, cl := loopbackPair(b, "udp")
	r := udpsrc.NewReads(32, 1500)
	payload := make([]byte, 1200)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		sendAndReadBatches(b, c, cl, r, payload, 32)
	}
}

// sendAndReadBatches has the client send n datagrams of payload, then reads them in as many batches as it takes.
func sendAndReadBatches(t testing.TB, c *udpsrc.Conn, cl *net.UDPConn, r *udpsrc.Reads, payload []byte, n int) {
	for range n {
		if _, err := cl.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	for got := 0; got < n; {
		k, err := c.ReadBatch(r)
		if err != nil {
			t.Fatal(err)
		}
		got += k
	}
}
