package system

import "golang.org/x/sys/unix"

// SetKernelHostname sets the host name of the caller's UTS namespace.
func SetKernelHostname(name string) error { return unix.Sethostname([]byte(name)) }
