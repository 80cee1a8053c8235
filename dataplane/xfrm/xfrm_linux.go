package xfrm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"toride/dataplane/internal/nlconv"
	"toride/dataplane/nsutil"
	"toride/dataplane/sysctl"
)

// RouteProtocol is the rtnetlink protocol number of the tunnel routes ("proto 202" in `ip route`): neither the
// kernel's, charon's, an admin's, nor torided's static routes (201), which another component reconciles.
const RouteProtocol netlink.RouteProtocol = 202

// Open returns the Tunnels of the network namespace at nsPath ("" for the caller's own).
func Open(nsPath string) (*Tunnels, error) {
	ns := netns.None()
	if nsPath != "" {
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrXFRM, nsPath, err)
		}
		defer h.Close()
		ns = h
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("%w: netlink: %v", ErrXFRM, err)
	}
	return &Tunnels{k: &netlinkKernel{h: h, nsPath: nsPath}}, nil
}

// netlinkKernel is the kernel through a per-namespace netlink handle.
type netlinkKernel struct {
	h      *netlink.Handle
	nsPath string
}

func (k *netlinkKernel) close() { k.h.Close() }

func (k *netlinkKernel) links() ([]link, error) {
	lks, err := nlconv.RetryDump(k.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("%w: list links: %v", ErrXFRM, err)
	}
	out := make([]link, 0, len(lks))
	for _, lk := range lks {
		a := lk.Attrs()
		l := link{Name: a.Name, Kind: lk.Type(), MTU: a.MTU, Alias: a.Alias, Up: a.Flags&net.FlagUp != 0}
		if x, ok := lk.(*netlink.Xfrmi); ok {
			l.IfID = x.Ifid
			addrs, err := nlconv.RetryDump(func() ([]netlink.Addr, error) { return k.h.AddrList(lk, netlink.FAMILY_ALL) })
			if err != nil {
				return nil, fmt.Errorf("%w: addresses of %s: %v", ErrXFRM, a.Name, err)
			}
			for _, ad := range addrs {
				if ad.Scope == unix.RT_SCOPE_LINK {
					continue // IPv6 link-local: the kernel's, not ours
				}
				if p, ok := nlconv.Prefix(ad.IPNet); ok {
					l.Addresses = append(l.Addresses, p)
				}
			}
		}
		out = append(out, l)
	}
	return out, nil
}

func (k *netlinkKernel) byName(name string) (netlink.Link, error) {
	lk, err := k.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrXFRM, name, err)
	}
	return lk, nil
}

func (k *netlinkKernel) add(i Interface) error {
	// No underlying device: the SAs' own addresses decide where ESP goes, as with any route-based tunnel.
	x := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: i.Name, MTU: i.MTU}, Ifid: i.IfID}
	if err := k.h.LinkAdd(x); err != nil {
		return fmt.Errorf("%w: create xfrm interface %s (if_id %d): %v", ErrXFRM, i.Name, i.IfID, err)
	}
	if err := k.h.LinkSetAlias(x, Owner); err != nil {
		_ = k.h.LinkDel(x)
		return fmt.Errorf("%w: mark %s as ours: %v", ErrXFRM, i.Name, err)
	}
	return nil
}

func (k *netlinkKernel) remove(name string) error {
	lk, err := k.byName(name)
	if err != nil {
		return err
	}
	if err := k.h.LinkDel(lk); err != nil {
		return fmt.Errorf("%w: remove %s: %v", ErrXFRM, name, err)
	}
	return nil
}

func (k *netlinkKernel) setMTU(name string, mtu int) error {
	lk, err := k.byName(name)
	if err != nil {
		return err
	}
	if err := k.h.LinkSetMTU(lk, mtu); err != nil {
		return fmt.Errorf("%w: MTU %d on %s: %v", ErrXFRM, mtu, name, err)
	}
	return nil
}

func (k *netlinkKernel) addAddress(name string, p netip.Prefix) error {
	lk, err := k.byName(name)
	if err != nil {
		return err
	}
	if err := k.h.AddrReplace(lk, &netlink.Addr{IPNet: nlconv.IPNet(p)}); err != nil {
		return fmt.Errorf("%w: address %s on %s: %v", ErrXFRM, p, name, err)
	}
	return nil
}

func (k *netlinkKernel) removeAddress(name string, p netip.Prefix) error {
	lk, err := k.byName(name)
	if err != nil {
		return err
	}
	if err := k.h.AddrDel(lk, &netlink.Addr{IPNet: nlconv.IPNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("%w: remove address %s from %s: %v", ErrXFRM, p, name, err)
	}
	return nil
}

func (k *netlinkKernel) setUp(name string) error {
	lk, err := k.byName(name)
	if err != nil {
		return err
	}
	if err := k.h.LinkSetUp(lk); err != nil {
		return fmt.Errorf("%w: up %s: %v", ErrXFRM, name, err)
	}
	return nil
}

// looseRPFilter sets rp_filter 2 on the interface: the far side may answer over the other tunnel than the one
// the packet left by, and strict filtering would drop those answers.
func (k *netlinkKernel) looseRPFilter(name string) error {
	return nsutil.Do(k.nsPath, func() error {
		if err := sysctl.Set("net.ipv4.conf."+name+".rp_filter", "2"); err != nil {
			return fmt.Errorf("%w: loose rp_filter on %s: %v", ErrXFRM, name, err)
		}
		return nil
	})
}

func (k *netlinkKernel) routes() (map[netip.Prefix]string, error) {
	rs, err := nlconv.RetryDump(func() ([]netlink.Route, error) {
		return k.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list tunnel routes: %v", ErrXFRM, err)
	}
	out := map[netip.Prefix]string{}
	for _, r := range rs {
		dst, ok := nlconv.Prefix(r.Dst)
		if !ok {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		lk, err := k.h.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue // the interface went away with its routes
		}
		out[dst] = lk.Attrs().Name
	}
	return out, nil
}

func (k *netlinkKernel) tunnelRoute(dst netip.Prefix, ifname string) (*netlink.Route, error) {
	lk, err := k.byName(ifname)
	if err != nil {
		return nil, err
	}
	return &netlink.Route{Dst: nlconv.IPNet(dst), LinkIndex: lk.Attrs().Index, Protocol: RouteProtocol,
		Scope: netlink.SCOPE_LINK, Table: unix.RT_TABLE_MAIN}, nil
}

func (k *netlinkKernel) replaceRoute(dst netip.Prefix, ifname string) error {
	r, err := k.tunnelRoute(dst, ifname)
	if err != nil {
		return err
	}
	if err := k.h.RouteReplace(r); err != nil {
		return fmt.Errorf("%w: route %s into %s: %v", ErrXFRM, dst, ifname, err)
	}
	return nil
}

func (k *netlinkKernel) removeRoute(dst netip.Prefix, ifname string) error {
	r, err := k.tunnelRoute(dst, ifname)
	if err != nil {
		return nil // the interface is gone, and its routes with it
	}
	if err := k.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%w: remove route %s from %s: %v", ErrXFRM, dst, ifname, err)
	}
	return nil
}

func (k *netlinkKernel) states() ([]SAStats, error) {
	var all []netlink.XfrmState
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		sts, err := nlconv.RetryDump(func() ([]netlink.XfrmState, error) { return k.h.XfrmStateList(fam) })
		if err != nil {
			return nil, fmt.Errorf("%w: list SAs: %v", ErrXFRM, err)
		}
		all = append(all, sts...)
	}
	out := make([]SAStats, 0, len(all))
	for _, s := range all {
		if s.Proto != netlink.XFRM_PROTO_ESP {
			continue
		}
		src, _ := netip.AddrFromSlice(s.Src)
		dst, _ := netip.AddrFromSlice(s.Dst)
		out = append(out, SAStats{Src: src.Unmap(), Dst: dst.Unmap(), SPI: uint32(s.Spi), IfID: uint32(s.Ifid),
			Bytes: s.Statistics.Bytes, Packets: s.Statistics.Packets,
			ReplayDrops: s.Statistics.Replay, IntegrityFailures: s.Statistics.Failed,
			Added: time.Unix(int64(s.Statistics.AddTime), 0)})
	}
	return out, nil
}

func (k *netlinkKernel) removeSA(s SAStats) error {
	err := k.h.XfrmStateDel(&netlink.XfrmState{Src: s.Src.AsSlice(), Dst: s.Dst.AsSlice(), Proto: netlink.XFRM_PROTO_ESP,
		Spi: int(s.SPI), Ifid: int(s.IfID)})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%w: delete SA %#x to %s: %v", ErrXFRM, s.SPI, s.Dst, err)
	}
	return nil
}
