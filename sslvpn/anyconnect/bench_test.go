package anyconnect_test

import (
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/anyconnect/internal/cstp"
	"toride/sslvpn/anyconnect/internal/dtlsrec"
	"toride/sslvpn/internal/icmptest"
)

// The data path per packet, in process over the loopback: the engine's side of each direction, with the test
// client as the peer. 1400-byte packets.

const benchPacket = 1400

// BenchmarkSendCSTP: Session.SendPacket → queue → writer → one TLS record per frame; the client reads.
func BenchmarkSendCSTP(b *testing.B) {
	e := newEngine(b, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, QueueLen: 1024})
	_, tn, s, _ := e.established(false)
	benchSend(b, s, func() error { _, _, err := tn.fr.ReadFrame(); return err }, tn)
}

// BenchmarkSendDTLS: the same over DTLS (the record fast path). The client counts datagrams without
// decrypting them, so its own costs stay out of the numbers.
func BenchmarkSendDTLS(b *testing.B) {
	e := newEngine(b, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DTLS: true, QueueLen: 1024})
	_, tn, s, _ := e.established(true)
	if err := tn.startDTLS(e.udpPort); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 5*time.Second, func() bool { return s.DTLS() })
	// One record from the client switches the server's sending to the fast path.
	if _, err := tn.dtls.Write([]byte{byte(cstp.DPDRequest)}); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = tn.dtls.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tn.dtls.Read(buf); err != nil {
		b.Fatal(err)
	}
	tn.mute.muted.Store(true) // pion reads no more; the benchmark reads the socket
	raw := make([]byte, 2048)
	benchSend(b, s, func() error { _, _, err := tn.udp.ReadFrom(raw); return err }, tn)
}

func benchSend(b *testing.B, s anyconnect.Session, read func() error, tn *tunnel) {
	pkt := make([]byte, benchPacket)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for read != nil && read() == nil {
			got.Add(1)
		}
	}()
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for !s.SendPacket(pkt) {
			runtime.Gosched() // the queue is full: a real TUN reader would drop; the benchmark waits
		}
	}
	// Until the writer has sent every packet: over UDP the client may lose some, which is not the engine's cost.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().PacketsOut < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	if read != nil {
		time.Sleep(50 * time.Millisecond)
		b.ReportMetric(float64(int64(b.N)-got.Load()), "lost")
	}
	tn.c.conn.Close()
	if tn.udp != nil {
		tn.udp.Close()
	}
	<-done
}

// BenchmarkReceiveCSTP: the client writes frames; the engine reads, parses and hands them to the uplink.
func BenchmarkReceiveCSTP(b *testing.B) {
	e := newEngine(b, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	_, tn, s, _ := e.established(false)
	addr := netip.MustParseAddr(tn.hdr.Get("X-CSTP-Address"))
	// Not an echo request: the test uplink takes it and answers nothing.
	pkt := icmptest.EchoRequest(addr, netip.MustParseAddr("10.9.9.9"), 1, benchPacket-28)
	frame, _ := cstp.AppendFrame(nil, cstp.Data, pkt)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := tn.c.conn.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, 10*time.Second, func() bool { return s.Stats().PacketsIn >= uint64(b.N) })
}

// BenchmarkReceiveDTLS: the same over DTLS; the client seals its records with internal/dtlsrec, so only the
// engine's costs show.
func BenchmarkReceiveDTLS(b *testing.B) {
	e := newEngine(b, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, DTLS: true})
	_, tn, s, _ := e.established(true)
	if err := tn.startDTLS(e.udpPort); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 5*time.Second, func() bool { return s.DTLS() })
	client := tn.rawDTLS()
	addr := netip.MustParseAddr(tn.hdr.Get("X-CSTP-Address"))
	pkt := append([]byte{byte(cstp.Data)}, icmptest.EchoRequest(addr, netip.MustParseAddr("10.9.9.9"), 1, benchPacket-28)...)
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: e.udpPort}
	buf := make([]byte, dtlsrec.Headroom+len(pkt)+dtlsrec.TagLen)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		copy(buf[dtlsrec.Headroom:], pkt)
		rec, err := client.Seal(buf, len(pkt))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tn.udp.WriteTo(rec, server); err != nil {
			b.Fatal(err)
		}
		// UDP has no back-pressure: pace the sender (bursts of 32) so this measures the path, not the drops.
		if i%32 == 31 {
			deadline := time.Now().Add(20 * time.Millisecond)
			for s.Stats().PacketsIn < uint64(i-32) && time.Now().Before(deadline) {
				runtime.Gosched()
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().PacketsIn < uint64(b.N)*9/10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(uint64(b.N)-s.Stats().PacketsIn), "lost")
}
