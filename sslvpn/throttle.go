package sslvpn

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// A flood of failing handshakes must not become a flood of log lines: at most throttleBurst lines of a kind go
// out per throttleWindow; the rest are counted, and their number is logged when the window ends.
const (
	throttleWindow = 10 * time.Second
	throttleBurst  = 10
)

// throttledLog rate-limits one kind of log line. Its zero value is ready to use (the clock is time.Now); it is
// safe for concurrent use. stop logs what is still held back and ends the timer.
type throttledLog struct {
	now    func() time.Time // nil: time.Now
	window time.Duration    // 0: throttleWindow

	mu      sync.Mutex
	start   time.Time // of the current window
	passed  int       // lines let through in it
	held    uint64    // lines held back in it
	log     *slog.Logger
	what    string
	timer   *time.Timer // reports the held lines at the window's end
	stopped bool
}

// Log logs msg at level through l, unless the window's lines are used up; what names the lines in the report
// of those held back ("handshake failures").
func (t *throttledLog) Log(l *slog.Logger, level slog.Level, what, msg string, args ...any) {
	clock := time.Now
	if t.now != nil {
		clock = t.now
	}
	now := clock()
	t.mu.Lock()
	var report func()
	if now.Sub(t.start) >= t.length() {
		report = t.takeLocked()
		t.start, t.passed = now, 0
	}
	pass := t.passed < throttleBurst
	if pass {
		t.passed++
	} else {
		t.held++
		t.log, t.what = l, what
		if t.timer == nil && !t.stopped {
			t.timer = time.AfterFunc(t.start.Add(t.length()).Sub(now), t.flush)
		}
	}
	t.mu.Unlock()
	if report != nil {
		report()
	}
	if pass {
		l.Log(context.Background(), level, msg, args...)
	}
}

func (t *throttledLog) length() time.Duration {
	if t.window > 0 {
		return t.window
	}
	return throttleWindow
}

// flush reports the lines held back so far.
func (t *throttledLog) flush() {
	t.mu.Lock()
	report := t.takeLocked()
	t.mu.Unlock()
	if report != nil {
		report()
	}
}

// stop reports the lines held back and keeps no timer running; later lines are still throttled, and reported
// at the next line after their window.
func (t *throttledLog) stop() {
	t.mu.Lock()
	t.stopped = true
	report := t.takeLocked()
	t.mu.Unlock()
	if report != nil {
		report()
	}
}

// takeLocked resets the held count and returns the report of it, or nil.
func (t *throttledLog) takeLocked() func() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	n, l, what, window := t.held, t.log, t.what, t.length()
	t.held = 0
	if n == 0 {
		return nil
	}
	return func() { l.Warn("log lines held back", "what", what, "count", n, "window", window) }
}
