package charon

import (
	"io"
	"os/exec"
	"syscall"

	"toride/dataplane/nsutil"
)

// launchSpec is how to start one charon process.
type launchSpec struct {
	binary    string
	runDir    string // bind-mounted onto /run in charon's private mount namespace
	netnsPath string // "" for the caller's network namespace
	env       []string
	output    io.Writer
}

// process is one started charon. pid is set before launch returns; err is valid once done is closed.
type process struct {
	pid  int
	done chan struct{}
	err  error
}

// launch starts charon in a private mount namespace where runDir is mounted on /run, so that its pid file
// (always /var/run/charon.pid) and its VICI socket are its own, and one charon per network namespace can run;
// and in the network namespace netnsPath, if given.
//
// The mount namespace is the child's own (CLONE_NEWNS); a small sh script makes its mounts private and binds the
// run directory before it execs charon, so no Go thread ever changes its mounts. The network namespace is entered
// by a locked OS thread just for the fork (a child inherits the namespaces of the thread that forks it), and left
// again at once. The thread stays locked while charon runs because Pdeathsig follows the forking thread: if
// torided dies, so does its charon, and a new torided can start a fresh one.
func launch(spec launchSpec) (*process, error) {
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		nsutil.OnLockedThread(func() bool {
			defer close(p.done)
			back := func() bool { return true }
			if spec.netnsPath != "" {
				b, err := nsutil.Enter(spec.netnsPath)
				if err != nil {
					started <- err
					return true
				}
				back = b
			}
			cmd := command(spec)
			if err := cmd.Start(); err != nil {
				started <- err
				return back()
			}
			p.pid = cmd.Process.Pid
			started <- nil
			clean := back()
			p.err = cmd.Wait()
			return clean
		})
	}()
	if err := <-started; err != nil {
		<-p.done
		return nil, err
	}
	return p, nil
}

// mountScript runs as the first program in charon's new mount namespace: $1 is the run directory, $2 charon.
// It also makes charon a little less likely than torided to be chosen by the kernel's OOM killer (charon inherits
// torided's oom_score_adj; it gets 100 less): charon alone is never killed first, whether the system or
// torided's memory cgroup, which charon shares, runs out. It carries every IPsec tunnel, and dies with torided
// anyway.
const mountScript = `set -e
echo $(( $(cat /proc/self/oom_score_adj) - 100 )) >/proc/self/oom_score_adj 2>/dev/null || true
mount --make-rprivate /
mount --bind "$1" /run
if [ -d /var/run ] && [ ! -L /var/run ]; then mount --bind "$1" /var/run; fi
exec "$2"`

func command(spec launchSpec) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", mountScript, "charon-launch", spec.runDir, spec.binary)
	cmd.Env = spec.env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = spec.output, spec.output
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

func signalProcess(pid int, sig syscall.Signal) { _ = syscall.Kill(pid, sig) }

// killGroup kills charon's process group (charon and any script it started).
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
