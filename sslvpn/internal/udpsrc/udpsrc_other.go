//go:build !linux

package udpsrc

import (
	"errors"
	"net"
)

// readSys has nothing to keep off Linux: ReadBatch reads one datagram at a time.
type readSys struct{}

func (readSys) init([][]byte) {}

func (c *Conn) readBatch(r *Reads) (int, error) { return c.readOne(r) }

var errUnsupported = errors.New("udpsrc: packet info is only supported on Linux")

func enable(*net.UDPConn) (bool, error) { return false, errUnsupported }

// ParseControl reports no local end: control messages are read on Linux only.
func ParseControl([]byte) (Local, error) { return Local{}, errUnsupported }

func marshalControl([]byte, Local) int { return 0 }
