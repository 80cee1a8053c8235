package charon

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"toride/tests/lab"
)

func waitState(ctx context.Context, t *testing.T, s *Supervisor, want State, cond func(Health) bool) Health {
	t.Helper()
	var h Health
	err := lab.WaitFor(ctx, 50*time.Millisecond, func() error {
		h = s.Health()
		if h.State == want && (cond == nil || cond(h)) {
			return nil
		}
		return &stateError{h}
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v\ncharon log:\n%s", want, err, s.Log())
	}
	return h
}

type stateError struct{ h Health }

func (e *stateError) Error() string { return "state " + string(e.h.State) + " " + e.h.LastError }

// Two supervised charons in two namespaces at once (the pid file is private), and a SIGKILLed charon comes back.
func TestSupervisorRestartsCharonPerNamespace(t *testing.T) {
	l := lab.New(t)
	if _, err := os.Stat(DefaultBinary); err != nil {
		t.Skip("strongswan-charon is not installed")
	}
	ctx := lab.Within(t, 60*time.Second)
	var sups []*Supervisor
	for _, role := range []string{"a", "b"} {
		ns := l.Namespace(role)
		dir, err := os.MkdirTemp("", "toride-charon-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		s, err := Start(Options{RunDir: dir, NetnsPath: "/run/netns/" + ns.Name, Backend: BackendLibipsec,
			MinBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sups = append(sups, s)
	}
	for _, s := range sups {
		waitState(ctx, t, s, StateRunning, nil)
	}
	first := sups[0].Health()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h := waitState(ctx, t, sups[0], StateRunning, func(h Health) bool { return h.PID != first.PID })
	if h.Restarts != 1 || h.Starts != 2 || !strings.Contains(h.LastExit, "killed") {
		t.Fatalf("after SIGKILL: %+v", h)
	}
	if sups[1].Health().Starts != 1 {
		t.Fatalf("the other charon was disturbed: %+v", sups[1].Health())
	}
	pid := h.PID
	sups[0].Close()
	sups[0].Close() // idempotent
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("charon %d still running after Close", pid)
	}
	if got := sups[0].Health().State; got != StateStopped {
		t.Fatalf("state after Close = %s", got)
	}
}
