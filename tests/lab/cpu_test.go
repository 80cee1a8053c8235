package lab

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A name with a space and a parenthesis, as a process may give itself.
	line := []byte("4242 (a b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0 123 0 0\n")
	ppid, ticks, err := parseStat(line)
	if err != nil || ppid != 17 || ticks != 281 {
		t.Fatalf("parseStat = %d, %d, %v; want 17, 281", ppid, ticks, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S p 1 1 0 -1 0 0 0 0 0 1 1"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) took it", bad)
		}
	}
}

// TestTreeCPUTimeCountsChildren: a shell that spins a child counts the child's time as its own.
func TestTreeCPUTimeCountsChildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cmd := exec.Command("sh", "-c", "sh -c 'while :; do :; done' & wait")
	cmd.SysProcAttr = processGroup()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		killGroup(cmd.Process.Pid)
		_ = cmd.Wait()
	}()
	time.Sleep(600 * time.Millisecond)
	cpu, err := TreeCPUTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu < 200*time.Millisecond {
		t.Fatalf("the tree spent %v in 600 ms of a spinning child; its time is not counted", cpu)
	}
}
