package sslvpn

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/dataplane/tun/tuntest"
	"toride/sslvpn/datapath"
	"toride/sslvpn/internal/icmptest"
	"toride/sslvpn/pool"
)

// recordingPeer is a Peer that notes the reasons it was closed with.
type recordingPeer struct {
	mu     sync.Mutex
	closed []string
}

func (p *recordingPeer) SendPacket([]byte) bool { return true }
func (p *recordingPeer) Close(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = append(p.closed, reason)
}

func (p *recordingPeer) reasons() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.closed...)
}

func TestCloseIdle(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), sessions: map[string]*Session{}}
	s.cfg.Store(&ServerConfig{IdleTimeout: time.Minute})
	var busyBytes, keepaliveOnly uint64 = 0, 5000
	add := func(id string, stats func() (uint64, uint64)) *recordingPeer {
		p := &recordingPeer{}
		s.sessions[id] = &Session{ID: id, Started: t0, peer: p, stats: stats}
		return p
	}
	busy := add("busy", func() (uint64, uint64) { busyBytes += 100; return busyBytes, 0 })
	// Its pings never reach the byte counters, so a client that only keeps the tunnel alive stands still.
	quiet := add("quiet", func() (uint64, uint64) { return keepaliveOnly, keepaliveOnly })
	silent := add("silent", func() (uint64, uint64) { return 0, 0 })
	unmetered := add("unmetered", nil)

	// 50 s after connecting: the silent session (idle since it connected) is not due yet; the quiet one is
	// first seen here, so its idle time counts from now.
	s.closeIdle(t0.Add(50 * time.Second))
	for _, p := range []*recordingPeer{busy, quiet, silent, unmetered} {
		if r := p.reasons(); len(r) != 0 {
			t.Fatalf("closed before any timeout: %v", r)
		}
	}
	s.closeIdle(t0.Add(61 * time.Second))
	if r := silent.reasons(); len(r) != 1 || r[0] != "idle timeout" {
		t.Fatalf("a session without any traffic for 61 s: closed with %q, want once with \"idle timeout\"", r)
	}
	if r := quiet.reasons(); len(r) != 0 {
		t.Fatalf("a session idle for 11 s was closed: %v", r)
	}
	for i := 0; i < 5; i++ {
		s.closeIdle(t0.Add(time.Duration(110+i*10) * time.Second))
	}
	if r := quiet.reasons(); len(r) != 1 {
		t.Fatalf("a session whose counters stood still for 100 s: closed %d times, want once", len(r))
	}
	if r := silent.reasons(); len(r) != 1 {
		t.Fatalf("a session already told to close was told again: %v", r)
	}
	if r := busy.reasons(); len(r) != 0 {
		t.Fatalf("a session with traffic at every look was closed: %v", r)
	}
	if r := unmetered.reasons(); len(r) != 0 {
		t.Fatalf("a session without counters was closed: %v", r)
	}

	// Idle timeout 0 is "never".
	s.cfg.Store(&ServerConfig{})
	late := add("late", func() (uint64, uint64) { return 0, 0 })
	s.closeIdle(t0.Add(24 * time.Hour))
	if r := late.reasons(); len(r) != 0 {
		t.Fatalf("closed with the idle timeout off: %v", r)
	}
}

func TestIdleCheckInterval(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{0, 30 * time.Second}, {10 * time.Millisecond, 100 * time.Millisecond}, {time.Second, 125 * time.Millisecond}, {time.Minute, 7500 * time.Millisecond},
		{30 * time.Minute, 30 * time.Second},
	} {
		if got := idleCheckInterval(c.timeout); got != c.want {
			t.Errorf("idleCheckInterval(%v) = %v, want %v", c.timeout, got, c.want)
		}
	}
}

// TestLogForbidden: a session's packets to networks not given to it are logged with their count, at most once a
// minute, and not at all while there are none.
func TestLogForbidden(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil)), sessions: map[string]*Session{}}
	dp, err := datapath.New(tuntest.NewDevice("vpn-test", 1500), datapath.Options{Buffers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	addr := netip.MustParseAddr("10.8.0.2")
	up, err := dp.Attach(addr, &recordingPeer{}, datapath.NewReach([]netip.Prefix{netip.MustParsePrefix("10.50.0.0/24")}, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.sessions["nosy"] = &Session{ID: "nosy", User: "nosy", uplink: up, Lease: pool.Lease{Addr: addr}}
	send := func(n int) {
		for i := range n {
			if err := up.WritePacket(icmptest.EchoRequest(addr, netip.MustParseAddr("10.60.0.1"), uint16(i), 8)); !errors.Is(err, datapath.ErrForbidden) {
				t.Fatal(err)
			}
		}
	}
	lines := func() int { return strings.Count(logs.String(), "not given to it") }
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s.logForbidden(t0)
	if lines() != 0 {
		t.Fatalf("a line with nothing forbidden:\n%s", logs.String())
	}
	send(2)
	s.logForbidden(t0.Add(time.Second))
	send(5)
	s.logForbidden(t0.Add(30 * time.Second))
	if lines() != 1 || !strings.Contains(logs.String(), "packets=2 total=2") {
		t.Fatalf("want one line of 2 packets within the minute:\n%s", logs.String())
	}
	s.logForbidden(t0.Add(62 * time.Second))
	if lines() != 2 || !strings.Contains(logs.String(), "packets=5 total=7") {
		t.Fatalf("want a second line of 5 more packets a minute later:\n%s", logs.String())
	}
}
