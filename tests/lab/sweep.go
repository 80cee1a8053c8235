package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// A test binary that dies without running its cleanups (killed, or stopped by `go test -timeout`, which exits
// without them) leaves its namespaces behind, and in them processes still running: a charon or an openvpn
// holding its sockets. So every lab records which process owns its prefix, and the first lab of each test
// binary removes what dead owners left.

// ownersDir holds one file per live lab prefix: the owning process's pid and start time. /run is a tmpfs, so
// a reboot empties it along with the namespaces.
var ownersDir = "/run/toride-lab"

var sweepOnce sync.Once

// recordOwner notes that this process owns prefix until the lab's cleanup.
func (l *Lab) recordOwner() {
	sweepOnce.Do(func() {
		for _, msg := range sweepStale() {
			l.t.Logf("lab: %s", msg)
		}
	})
	id, err := processIdentity(os.Getpid())
	if err == nil {
		err = os.MkdirAll(ownersDir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(ownersDir, l.prefix), []byte(id), 0o644)
	}
	if err != nil {
		// The sweep is a safety net for the next run; a lab that cannot record itself still works.
		l.t.Logf("lab: cannot record the owner of %s: %v", l.prefix, err)
		return
	}
	l.t.Cleanup(func() { _ = os.Remove(filepath.Join(ownersDir, l.prefix)) })
}

// processIdentity is "pid starttime": the start time (in clock ticks since boot) tells a live owner from a
// later process that happens to reuse its pid.
func processIdentity(pid int) (string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces and parentheses; the fields after its last ')' are plain.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	const startTime = 22 - 3 // field 22 of stat(5), counted from field 3
	if len(fields) <= startTime {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return fmt.Sprintf("%d %s", pid, fields[startTime]), nil
}

// sweepStale removes the namespaces, and kills the processes in them, of every recorded prefix whose owner is
// gone. It returns one line for each prefix it removed.
func sweepStale() []string {
	owners, err := os.ReadDir(ownersDir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, o := range owners {
		prefix := o.Name()
		rec, err := os.ReadFile(filepath.Join(ownersDir, prefix))
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(string(rec), &pid); err == nil {
			if id, err := processIdentity(pid); err == nil && id == strings.TrimSpace(string(rec)) {
				continue // the owner still runs
			}
		}
		names, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"-*"))
		for _, path := range names {
			ns := &Netns{Name: filepath.Base(path)}
			ns.killAll()
			_ = exec.Command("ip", "netns", "del", ns.Name).Run()
		}
		_ = os.Remove(filepath.Join(ownersDir, prefix))
		removed = append(removed, fmt.Sprintf("removed %d namespace(s) left by a test process that ended without its cleanups (prefix %s)", len(names), prefix))
	}
	return removed
}
