package lab

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTwoNamespacesPing builds two namespaces joined by a veth pair and pings across; then a third behind a
// router namespace, to prove addresses, routes and forwarding.
func TestTwoNamespacesPing(t *testing.T) {
	l := New(t, "ping")
	a := l.Namespace("a")
	b := l.Namespace("b")
	l.Link(a, "eth0", "10.200.0.1/24", b, "eth0", "10.200.0.2/24")
	if err := a.Ping("10.200.0.2", 2); err != nil {
		t.Fatalf("ping across the veth: %v", err)
	}

	c := l.Namespace("c")
	l.Link(b, "eth1", "10.201.0.1/24", c, "eth0", "10.201.0.2/24")
	b.EnableForwarding()
	a.AddRoute("10.201.0.0/24", "10.200.0.2")
	c.AddRoute("default", "10.201.0.1")
	if err := a.Ping("10.201.0.2", 2); err != nil {
		t.Fatalf("ping through the router namespace: %v", err)
	}
	// An address nobody has must not answer: the ping helper can fail.
	if err := a.Ping("10.201.0.99", 1); err == nil {
		t.Fatal("ping to an absent host succeeded")
	}
}

func TestProcessOutputAndCleanup(t *testing.T) {
	l := New(t)
	a := l.Namespace("p")
	p := a.Start("sh", "-c", "echo ready; sleep 60")
	if err := p.WaitOutput(Within(t, 5*time.Second), "ready"); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if exited, _ := p.Exited(); !exited {
		t.Fatal("process still running after Stop")
	}
	q := a.Start("sh", "-c", "echo bye")
	err := q.WaitOutput(Within(t, 5*time.Second), "never printed")
	if err == nil || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("WaitOutput on an ended process = %v, want an 'ended' error", err)
	}
}

func TestNamespaceIsolation(t *testing.T) {
	l := New(t)
	a := l.Namespace("iso")
	out := a.MustRun("ip", "-o", "link", "show")
	if strings.Contains(out, "eth0") || !strings.Contains(out, "lo") {
		t.Fatalf("a fresh namespace should hold only lo, got:\n%s", out)
	}
}

// TestDoLeavesNoThreadBehind: after Do, no thread of the test binary is left inside the namespace (once one was,
// on the main thread, and the namespace's cleanup killed the test binary itself).
func TestDoLeavesNoThreadBehind(t *testing.T) {
	l := New(t)
	a := l.Namespace("do")
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if err := a.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != own {
			t.Errorf("thread %s is in %s, not in the test's own namespace %s", task, ns, own)
		}
	}
	if out := a.MustRun("ip", "netns", "pids", a.Name); strings.Contains(" "+strings.Join(strings.Fields(out), " ")+" ", " "+strconv.Itoa(os.Getpid())+" ") {
		t.Fatalf("the test binary is listed in the namespace: %s", out)
	}
}

// TestSweepRemovesWhatAKilledTestLeft: a test binary killed before its cleanups leaves a namespace with a
// process running in it; the sweep kills the process and removes the namespace, and leaves the labs of live
// processes (this one's) alone.
func TestSweepRemovesWhatAKilledTestLeft(t *testing.T) {
	if os.Getenv("TORIDE_LAB_SWEEP_CHILD") == "1" {
		l := New(t)
		n := l.Namespace("left")
		p := n.Start("sleep", "300")
		fmt.Printf("LEFT %s %d\n", n.Name, p.Pid())
		time.Sleep(time.Hour) // killed by the parent
	}
	l := New(t)
	mine := l.Namespace("mine")

	child := exec.Command(os.Args[0], "-test.run=^TestSweepRemovesWhatAKilledTestLeft$", "-test.v")
	child.Env = append(os.Environ(), "TORIDE_LAB_SWEEP_CHILD=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	var name string
	var pid int
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "LEFT %s %d", &name, &pid); err == nil {
			break
		}
	}
	if name == "" {
		t.Fatal("the child test never reported its namespace")
	}
	// Should the sweep fail, do its work here so the test leaves nothing behind.
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the process in the left namespace should outlive its killed owner: %v", err)
	}

	removed := strings.Join(sweepStale(), "\n")
	if prefix, _, _ := strings.Cut(name, "-"); !strings.Contains(removed, "1 namespace(s) left by a test process that ended without its cleanups (prefix "+prefix+")") {
		t.Fatalf("sweep said %q, want the child's one namespace (%s) removed", removed, name)
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still there after the sweep (%v)", name, err)
	}
	if err := WaitFor(Within(t, 5*time.Second), 20*time.Millisecond, func() error {
		// The killed sleep is our grandchild's child, reparented to init, which reaps it.
		if syscall.Kill(pid, 0) == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z") {
				return fmt.Errorf("process %d still runs", pid)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + mine.Name); err != nil {
		t.Fatalf("the sweep removed a live lab's namespace %s: %v", mine.Name, err)
	}
}
