package lab

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, 100 on every Linux architecture the appliance runs on.
const userHZ = 100

// CPUTime returns the processor time (user and system, of every thread) the process has spent so far, with that
// of every process descended from it that is still running: the workers a server forks for its clients (ocserv)
// count as the server's.
func (p *Process) CPUTime() (time.Duration, error) { return TreeCPUTime(p.Pid()) }

// TreeCPUTime is CPUTime for any process id.
func TreeCPUTime(root int) (time.Duration, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	type proc struct{ ppid, ticks int }
	procs := map[int]proc{}
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // ended since the glob
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		ppid, ticks, err := parseStat(data)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		procs[pid] = proc{ppid, ticks}
	}
	if _, ok := procs[root]; !ok {
		return 0, fmt.Errorf("lab: no process %d", root)
	}
	var ticks int
	for pid, p := range procs {
		// Walk up to the root or to init; process trees here are a few levels deep.
		for a := pid; a > 1; a = procs[a].ppid {
			if a == root {
				ticks += p.ticks
				break
			}
			if _, ok := procs[a]; !ok {
				break
			}
		}
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStat reads the parent's id and the user plus system time (in USER_HZ ticks) from a /proc/PID/stat line.
// The command name, in parentheses, may hold spaces and parentheses itself: the fields start after the last ')'.
func parseStat(data []byte) (ppid, ticks int, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no command name in %q", data)
	}
	f := bytes.Fields(data[i+1:])
	// After the name: state, ppid, …; utime and stime are the 14th and 15th fields of the line, 12th and 13th here.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short stat line %q", data)
	}
	ppid, err = strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, err
	}
	utime, err1 := strconv.Atoi(string(f[11]))
	stime, err2 := strconv.Atoi(string(f[12]))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad times in %q", data)
	}
	return ppid, utime + stime, nil
}
