package tablegate

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"toride/dataplane/internal/nlconv"
)

// Protocol is the rtnetlink protocol number on the gate's rules ("proto 202" in `ip rule`, as the tunnel routes).
const Protocol = 202

// Open returns the Gate of the namespace at nsPath ("" for the caller's own).
func Open(nsPath string) (*Gate, error) {
	ns := netns.None()
	if nsPath != "" {
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("tablegate: %s: %w", nsPath, err)
		}
		defer h.Close()
		ns = h
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("tablegate: netlink: %w", err)
	}
	return &Gate{k: netlinkKernel{h}}, nil
}

type netlinkKernel struct{ h *netlink.Handle }

func (k netlinkKernel) close() { k.h.Close() }

func (k netlinkKernel) rules() ([]netip.Prefix, map[int]bool, error) {
	var pass []netip.Prefix
	guard := map[int]bool{}
	for _, f := range []int{4, 6} {
		rs, err := nlconv.RetryDump(func() ([]netlink.Rule, error) { return k.h.RuleList(nlFamily(f)) })
		if err != nil {
			return nil, nil, fmt.Errorf("tablegate: list rules: %w", err)
		}
		for _, r := range rs {
			switch {
			case r.Priority == PassPriority && r.Table == CharonTable && r.Dst != nil:
				if p, ok := nlconv.Prefix(r.Dst); ok {
					pass = append(pass, p)
				}
			case r.Priority == GuardPriority && r.Table == unix.RT_TABLE_MAIN:
				guard[f] = true
			}
		}
	}
	return pass, guard, nil
}

func nlFamily(f int) int {
	if f == 4 {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func passRule(dst netip.Prefix) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = nlFamily(family(dst))
	r.Priority = PassPriority
	r.Table = CharonTable
	r.Dst = nlconv.IPNet(dst)
	r.Protocol = Protocol
	return r
}

func (k netlinkKernel) addPass(dst netip.Prefix) error {
	if err := k.h.RuleAdd(passRule(dst)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("tablegate: rule to %s lookup %d: %w", dst, CharonTable, err)
	}
	return nil
}

func (k netlinkKernel) delPass(dst netip.Prefix) error {
	if err := k.h.RuleDel(passRule(dst)); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("tablegate: remove rule to %s: %w", dst, err)
	}
	return nil
}

func (k netlinkKernel) setGuard(f int, on bool) error {
	r := netlink.NewRule()
	r.Family = nlFamily(f)
	r.Priority = GuardPriority
	r.Table = unix.RT_TABLE_MAIN
	r.Protocol = Protocol
	if on {
		if err := k.h.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("tablegate: rule lookup main (IPv%d): %w", f, err)
		}
		return nil
	}
	if err := k.h.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("tablegate: remove rule lookup main (IPv%d): %w", f, err)
	}
	return nil
}
