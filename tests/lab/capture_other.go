//go:build !linux

package lab

import "errors"

var errNoCapture = errors.New("lab: packet capture needs Linux (AF_PACKET)")

// Capture needs Linux: elsewhere it fails the test.
func (n *Netns) Capture(ifname string) *Capture {
	n.lab.t.Helper()
	n.lab.t.Fatal(errNoCapture)
	return nil
}

// SendIP needs Linux: elsewhere it returns an error.
func (n *Netns) SendIP(pkt []byte) error { return errNoCapture }
