package nft_test

import (
	"runtime"

	"golang.org/x/sys/unix"

	"toride/tests/lab"
)

// doIn is lab.Netns.Do on a thread that is never the main one and is moved back afterwards. lab's Do may lock
// the main thread into the namespace (the lab's cleanup then finds the test binary in the namespace and kills
// it), and it discards its thread, which kills every process the lab started from that thread (Pdeathsig
// follows the forking thread).
func doIn(n *lab.Netns, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			errc <- doIn(n, fn) // runs elsewhere: this goroutine holds the main thread meanwhile
			runtime.UnlockOSThread()
			return
		}
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		err = fn()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
