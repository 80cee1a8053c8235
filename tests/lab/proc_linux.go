package lab

import "syscall"

func processGroup() *syscall.SysProcAttr {
	// Own process group, so Stop reaches the children a command spawns. No Pdeathsig: the kernel sends it when
	// the *thread* that started the process ends, and Go retires threads (one locked into a namespace, say),
	// which would kill a process in the middle of a test. Cleanup stops every process instead.
	return &syscall.SysProcAttr{Setpgid: true}
}

func terminateGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGTERM) }
func killGroup(pid int)      { _ = syscall.Kill(-pid, syscall.SIGKILL) }
func killPid(pid int)        { _ = syscall.Kill(pid, syscall.SIGKILL) }
