//go:build !linux

package lab

import (
	"os"
	"syscall"
)

// The lab needs Linux (network namespaces); elsewhere a process is started on its own and stopped alone.

func processGroup() *syscall.SysProcAttr { return nil }

func terminateGroup(pid int) { signal(pid, syscall.SIGTERM) }
func killGroup(pid int)      { signal(pid, syscall.SIGKILL) }
func killPid(pid int)        { signal(pid, syscall.SIGKILL) }

func signal(pid int, sig os.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Signal(sig)
	}
}
