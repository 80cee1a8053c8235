package anyconnect_test

import "runtime"

// The lab's Netns.Do runs its function on a locked thread that enters a namespace and is then discarded; if the
// Go scheduler picks the process's main thread for it, the runtime cannot discard that thread, so the whole
// process stays visible in the namespace and the lab's cleanup (which kills every process in it) kills the test
// binary. Keeping the main goroutine on the main thread keeps Netns.Do off it.
func init() { runtime.LockOSThread() }
