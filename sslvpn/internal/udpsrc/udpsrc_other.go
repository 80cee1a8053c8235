//go:build !linux

package udpsrc

import (
	"errors"
	"net"
)

var errUnsupported = errors.New("udpsrc: packet info is only supported on Linux")

func enable(*net.UDPConn) (bool, error) { return false, errUnsupported }

// ParseControl reports no local end: control messages are read on Linux only.
func ParseControl([]byte) (Local, error) { return Local{}, errUnsupported }

func marshalControl([]byte, Local) int { return 0 }
