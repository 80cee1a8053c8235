package icmpprobe

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"toride/dataplane/nsutil"
	"toride/tests/lab"
)

// slowTarget answers echo requests in namespace ns itself, delay after each arrives, while answering is true
// (the kernel's own answers are turned off there).
func slowTarget(t *testing.T, ns *lab.Netns, addr string, delay time.Duration, answering *atomic.Bool) {
	ns.MustRun("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
	var conn *icmp.PacketConn
	if err := nsutil.Do("/run/netns/"+ns.Name, func() (err error) {
		conn, err = icmp.ListenPacket("ip4:icmp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEcho || !answering.Load() {
				continue
			}
			echo := m.Body.(*icmp.Echo)
			reply, _ := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: echo.ID, Seq: echo.Seq, Data: echo.Data}}).Marshal(nil)
			time.AfterFunc(delay, func() { _, _ = conn.WriteTo(reply, from.(*net.IPAddr)) })
		}
	}()
}

// TestProbesOverlapAndReportInOrder probes, with a timeout four times the interval, a target that answers
// 150 ms late (answered although the next requests are already out), then the same target with the link cut
// (every request lost, each reported once its own timeout has passed): results come in the order of sending.
func TestProbesOverlapAndReportInOrder(t *testing.T) {
	l := lab.New(t, "sysctl")
	a, b := l.Namespace("probe"), l.Namespace("target")
	l.Link(a, "eth0", "192.0.2.1/24", b, "eth0", "192.0.2.2/24")
	var answering atomic.Bool
	answering.Store(true)
	slowTarget(t, b, "192.0.2.2", 150*time.Millisecond, &answering)

	results := make(chan Result, 100)
	p, err := Start(Config{NetnsPath: "/run/netns/" + a.Name, Source: netip.MustParseAddr("192.0.2.1"),
		Target: netip.MustParseAddr("192.0.2.2"), Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, ID: 7},
		func(r Result) { results <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetEnabled(true)

	next := func() Result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no result")
			return Result{}
		}
	}
	last := 0
	inOrder := func(r Result) {
		t.Helper()
		if last != 0 && r.Seq != last+1 {
			t.Fatalf("result %d after %d", r.Seq, last)
		}
		last = r.Seq
	}
	for range 10 {
		r := next()
		inOrder(r)
		if !r.OK || r.RTT < 150*time.Millisecond || r.RTT > 200*time.Millisecond {
			t.Fatalf("probe %d over a 150 ms link: %+v", r.Seq, r)
		}
	}
	answering.Store(false)
	lost := 0
	for lost < 10 {
		r := next()
		inOrder(r)
		if r.OK {
			continue // sent before the cut
		}
		if time.Since(r.Sent) < 200*time.Millisecond {
			t.Fatalf("probe %d reported lost %v after it was sent, before its timeout", r.Seq, time.Since(r.Sent))
		}
		lost++
	}
}
