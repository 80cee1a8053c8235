//go:build !linux

package udpsrc

import (
	"errors"
	"net"
)

// readSys has nothing to keep off Linux: ReadBatch reads one datagram at a time.
type readSys struct{}

func (readSys) init([][]byte) {}

func (c *Conn) readBatch(r *Reads) (int, error) {
	n, from, local, err := c.ReadFrom(r.bufs[0])
	if err != nil {
		return 0, err
	}
	r.Datagrams = append(r.Datagrams, Datagram{B: r.bufs[0][:n], From: from, Local: local})
	return 1, nil
}

var errUnsupported = errors.New("udpsrc: packet info is only supported on Linux")

func enable(*net.UDPConn) (bool, error) { return false, errUnsupported }

// ParseControl reports no local end: control messages are read on Linux only.
func ParseControl([]byte) (Local, error) { return Local{}, errUnsupported }

func marshalControl([]byte, Local) int { return 0 }
