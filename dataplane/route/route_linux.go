// Package route programs the static routes torided owns in one network namespace. Every route it adds carries
// its own routing protocol number (Protocol), so it lists, replaces and removes only its own routes and never
// touches those of the kernel, of charon (table 220) or of an admin.
//
// A Routes is safe for concurrent use.
package route

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"toride/dataplane/internal/nlconv"
)

// Protocol is the rtnetlink protocol number on torided's routes ("proto 201" in `ip route`).
const Protocol netlink.RouteProtocol = 201

// ErrUnreachable is a next hop that no connected network holds (yet).
var ErrUnreachable = errors.New("route: next hop is not on any connected network")

// Route is one static route.
type Route struct {
	Dst    netip.Prefix
	Via    netip.Addr
	Metric int
}

// Routes programs torided's routes in one namespace.
type Routes struct{ h *netlink.Handle }

// Open returns a Routes for the namespace ns (netns.None() for the caller's own).
func Open(ns netns.NsHandle) (*Routes, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("route: netlink: %w", err)
	}
	return &Routes{h: h}, nil
}

// Close releases the netlink handle.
func (r *Routes) Close() { r.h.Close() }

func (r *Routes) nl(rt Route) *netlink.Route {
	return &netlink.Route{
		Dst:      nlconv.IPNet(rt.Dst),
		Gw:       net.IP(rt.Via.AsSlice()),
		Priority: rt.Metric,
		Protocol: Protocol,
		Table:    unix.RT_TABLE_MAIN,
	}
}

// Replace adds the route or replaces one to the same destination and metric.
func (r *Routes) Replace(rt Route) error {
	if err := r.h.RouteReplace(r.nl(rt)); err != nil {
		if errors.Is(err, unix.ENETUNREACH) {
			return fmt.Errorf("%w: %s via %s", ErrUnreachable, rt.Dst, rt.Via)
		}
		return fmt.Errorf("route: %s via %s: %w", rt.Dst, rt.Via, err)
	}
	return nil
}

// Delete removes the route; a route that is not there is not an error.
func (r *Routes) Delete(rt Route) error {
	if err := r.h.RouteDel(r.nl(rt)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("route: remove %s via %s: %w", rt.Dst, rt.Via, err)
	}
	return nil
}

// List returns torided's routes in the main table.
func (r *Routes) List() ([]Route, error) {
	routes, err := nlconv.RetryDump(func() ([]netlink.Route, error) {
		return r.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: Protocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("route: list: %w", err)
	}
	var out []Route
	for _, nr := range routes {
		var rt Route
		var ok bool
		if rt.Dst, ok = nlconv.Prefix(nr.Dst); !ok {
			rt.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0) // the default route has no destination
		}
		rt.Via, _ = netip.AddrFromSlice(nr.Gw)
		rt.Via = rt.Via.Unmap()
		rt.Metric = nr.Priority
		out = append(out, rt)
	}
	return out, nil
}
