package lab

import "syscall"

func processGroup() *syscall.SysProcAttr {
	// Own process group, so Stop reaches the children a command spawns; and die with the test binary.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func terminateGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGTERM) }
func killGroup(pid int)      { _ = syscall.Kill(-pid, syscall.SIGKILL) }
func killPid(pid int)        { _ = syscall.Kill(pid, syscall.SIGKILL) }
