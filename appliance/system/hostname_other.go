//go:build !linux

package system

import "errors"

// SetKernelHostname fails off Linux.
func SetKernelHostname(string) error { return errors.New("system: setting the host name needs Linux") }
