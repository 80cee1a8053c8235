//go:build !linux

package system

import "errors"

// ListInterfaces fails off Linux.
func ListInterfaces() ([]InterfaceStatus, error) {
	return nil, errors.New("system: listing interfaces needs Linux")
}
