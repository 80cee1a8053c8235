package ovpnclient

import (
	"testing"
	"time"
)

func TestLogTime(t *testing.T) {
	out := "2026-11-23 19:31:30 us=100000 MANAGEMENT: CMD 'hold release'\n" +
		"2026-11-23 19:31:30 us=912220 TCP connection established\n" +
		"2026-11-23 19:31:31 us=12220 Initialization Sequence Completed\n"
	start, end := logTime(out, "CMD 'hold release'"), logTime(out, Connected)
	if d := end.Sub(start); d != 912220*time.Microsecond {
		t.Errorf("%v from the hold release to the tunnel, want 912.22ms", d)
	}
	if !logTime(out, "not in the log").IsZero() || !logTime("Initialization Sequence Completed\n", Connected).IsZero() {
		t.Error("a time without its line, or a line without its time")
	}
}
