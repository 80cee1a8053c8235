// Package nsutil runs code on an OS thread that has entered another network namespace, without ever letting
// another goroutine run on that thread while it is there.
//
// The thread is locked for the duration, moved back to its original namespace afterwards and only then unlocked.
// Threads are not discarded: when the Go runtime retires a thread, every child process started from that thread
// with Pdeathsig is killed (the signal follows the forking thread, not the process), which would take down
// processes that other parts of torided, or a test lab, started. Only if moving back fails is the thread
// discarded. The main thread is never used: the runtime cannot retire it, and tools such as `ip netns pids` see a
// process in whatever namespace its main thread is in.
package nsutil

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// OnLockedThread runs fn on a locked OS thread other than the main thread and returns when fn returns. fn reports
// whether it left the thread as it found it: a clean thread is unlocked and reused, a dirty one is discarded.
func OnLockedThread(fn func() (clean bool)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// We hold the main thread: run fn in a goroutine that therefore cannot land on it, and give the
			// main thread back untouched.
			inner := make(chan struct{})
			go func() {
				defer close(inner)
				runtime.LockOSThread()
				if fn() {
					runtime.UnlockOSThread()
				}
			}()
			<-inner
			runtime.UnlockOSThread()
			return
		}
		if fn() {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// Enter moves the calling thread, which must be locked, into the network namespace at path and returns the
// function that moves it back (reporting whether that worked).
func Enter(path string) (back func() bool, err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(orig)
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		return nil, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	return func() bool {
		defer unix.Close(orig)
		return unix.Setns(orig, unix.CLONE_NEWNET) == nil
	}, nil
}

// Do runs fn in the network namespace at path ("" means the caller's). Sockets fn opens belong to that namespace
// for their whole life, whichever goroutine uses them later.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	var err error
	OnLockedThread(func() bool {
		back, eerr := Enter(path)
		if eerr != nil {
			err = eerr
			return true // Enter either moved nothing or failed before moving
		}
		err = fn()
		return back()
	})
	return err
}
