package ike

import (
	"fmt"
	"net/netip"

	"toride/dataplane/link"
)

// insideLabel marks the inside addresses the engine puts on the loopback, so that it can find its own after a
// restart and never touches anyone else's.
const insideLabel = "lo:toride"

// insideAddrs keeps the tunnels' local inside addresses (/32) on the loopback of the engine's namespace. They
// are the probes' source addresses, and kernel-libipsec needs a local address inside each CHILD_SA's local
// selector to install its route. Used only by the engine goroutine.
type insideAddrs interface {
	// sync makes the engine's loopback addresses exactly want.
	sync(want []netip.Addr) error
	close()
}

// loopbackAddrs is insideAddrs on the loopback of a real network namespace.
type loopbackAddrs struct{ links *link.Links }

func openLoopbackAddrs(netnsPath string) (*loopbackAddrs, error) {
	l, err := link.OpenPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("inside addresses: %w", err)
	}
	return &loopbackAddrs{links: l}, nil
}

func (a *loopbackAddrs) sync(want []netip.Addr) error {
	return a.links.SyncLabelled("lo", insideLabel, want)
}

func (a *loopbackAddrs) close() { a.links.Close() }
