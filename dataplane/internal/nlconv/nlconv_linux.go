// Package nlconv is what every netlink user of dataplane needs alike: dumps retried when the kernel interrupts
// them, and conversions between netlink's net.IPNet and netip.Prefix.
package nlconv

import (
	"errors"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// IPNet converts a prefix for netlink.
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Prefix converts netlink's prefix; ok is false for nil or a malformed one. IPv4-mapped addresses come back as
// IPv4.
func Prefix(n *net.IPNet) (p netip.Prefix, ok bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// RetryDump repeats a netlink dump the kernel interrupted because the table changed meanwhile (five tries).
func RetryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}
