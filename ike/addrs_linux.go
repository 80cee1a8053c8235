package ike

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// addrLabel marks the inside addresses the engine puts on the loopback, so that it can find its own after a
// restart and never touches anyone else's.
const addrLabel = "lo:toride"

// addrManager keeps the tunnels' local inside addresses (/32) on the loopback of the engine's namespace. They
// are the probes' source addresses, and kernel-libipsec needs a local address inside each CHILD_SA's local
// selector to install its route. Used only by the engine goroutine.
type addrManager struct {
	h *netlink.Handle
}

func newAddrManager(netnsPath string) (*addrManager, error) {
	if netnsPath == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		return &addrManager{h: h}, nil
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	return &addrManager{h: h}, nil
}

// sync makes the labelled loopback addresses exactly want.
func (m *addrManager) sync(want []netip.Addr) error {
	lo, err := m.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	have, err := m.h.AddrList(lo, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list loopback addresses: %w", err)
	}
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		wanted[a] = true
	}
	var errs []error
	for _, a := range have {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.Label != addrLabel {
			continue
		}
		ip = ip.Unmap()
		if wanted[ip] {
			delete(wanted, ip)
			continue
		}
		if err := m.h.AddrDel(lo, &a); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", ip, err))
		}
	}
	for a := range wanted {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Label: addrLabel}
		if err := m.h.AddrReplace(lo, addr); err != nil {
			errs = append(errs, fmt.Errorf("add %s to lo: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

func (m *addrManager) close() { m.h.Close() }
