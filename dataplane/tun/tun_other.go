//go:build !linux

package tun

// Create returns ErrUnsupported.
func (k Kernel) Create(name string, mtu int) (Device, error) { return nil, ErrUnsupported }
