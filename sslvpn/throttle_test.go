package sslvpn

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/openvpn"
)

// lockedBuffer collects log output from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// A flood of failed handshakes is logged a few lines at a time, with the number held back, and every failure
// is counted by protocol; handshakes cut by a shutdown are neither.
func TestHandshakeFailuresAreThrottledAndCounted(t *testing.T) {
	var out lockedBuffer
	s := &Server{log: slog.New(slog.NewTextHandler(&out, nil))}
	remote := netip.MustParseAddrPort("192.0.2.9:40000")
	for i := 0; i < 1000; i++ {
		(*openvpnBackend)(s).HandshakeFailed(remote, openvpn.UDP, fmt.Errorf("%w: handshake %d", openvpn.ErrHandshakeTimeout, i))
	}
	for i := 0; i < 5; i++ {
		(*anyconnectBackend)(s).HandshakeFailed(remote, fmt.Errorf("%w: no request", anyconnect.ErrTimeout))
	}
	(*openvpnBackend)(s).HandshakeFailed(remote, openvpn.TCP, fmt.Errorf("%w: bye", openvpn.ErrShutdown))
	(*anyconnectBackend)(s).HandshakeFailed(remote, context.Canceled)
	s.failureLog.stop()

	logged := len(out.lines("OpenVPN handshake failed")) + len(out.lines("AnyConnect handshake failed"))
	if logged != throttleBurst {
		t.Errorf("%d handshake failures logged within one window, want %d", logged, throttleBurst)
	}
	if held := out.lines("log lines held back"); len(held) != 1 || !strings.Contains(held[0], "count=995") || !strings.Contains(held[0], "what=\"handshake failures\"") {
		t.Errorf("report of the held lines: %q, want one saying 995", held)
	}
	s.mu.Lock()
	got := fmt.Sprint(s.failed)
	s.mu.Unlock()
	if want := "map[anyconnect:5 openvpn-udp:1000]"; got != want {
		t.Errorf("failed handshakes counted %s, want %s", got, want)
	}
}

// Each window lets throttleBurst lines through; what a window held back is reported once it ends, by its timer
// or by the next line.
func TestThrottledLogWindows(t *testing.T) {
	var out lockedBuffer
	l := slog.New(slog.NewTextHandler(&out, nil))
	now := time.Unix(1800000000, 0)
	tl := &throttledLog{now: func() time.Time { return now }}
	defer tl.stop()
	logN := func(n int) {
		for i := 0; i < n; i++ {
			tl.Log(l, slog.LevelWarn, "tests", "line")
		}
	}
	logN(25)
	if n := len(out.lines("msg=line")); n != throttleBurst {
		t.Fatalf("%d lines in the first window, want %d", n, throttleBurst)
	}
	now = now.Add(throttleWindow)
	logN(3)
	if n := len(out.lines("msg=line")); n != throttleBurst+3 {
		t.Fatalf("%d lines after the second window began, want %d", n, throttleBurst+3)
	}
	if held := out.lines("count=15"); len(held) != 1 {
		t.Fatalf("the first window's 15 held lines reported %d times:\n%s", len(held), out.b.String())
	}
	// A window that ends without another line is reported by its timer.
	tl2 := &throttledLog{window: 100 * time.Millisecond}
	defer tl2.stop()
	for i := 0; i < throttleBurst+2; i++ {
		tl2.Log(l, slog.LevelWarn, "quiet", "other")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(out.lines("what=quiet count=2")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the held lines were never reported:\n%s", out.b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
