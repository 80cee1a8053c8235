package system

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ListInterfaces returns every interface of the caller's network namespace with its addresses (without IPv6
// link-local ones) and counters, by name.
func ListInterfaces() ([]InterfaceStatus, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("system: interfaces: %w", err)
	}
	defer h.Close()
	links, err := retry(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("system: interfaces: %w", err)
	}
	var out []InterfaceStatus
	for _, lk := range links {
		a := lk.Attrs()
		st := InterfaceStatus{Name: a.Name, Up: a.Flags&net.FlagUp != 0, Running: a.OperState == netlink.OperUp || a.RawFlags&unix.IFF_RUNNING != 0,
			MTU: a.MTU, MAC: a.HardwareAddr.String(), Addresses: []string{}}
		if s := a.Statistics; s != nil {
			st.RxBytes, st.TxBytes, st.RxPackets, st.TxPackets = s.RxBytes, s.TxBytes, s.RxPackets, s.TxPackets
			st.RxErrors, st.TxErrors, st.RxDropped, st.TxDropped = s.RxErrors, s.TxErrors, s.RxDropped, s.TxDropped
		}
		addrs, err := retry(func() ([]netlink.Addr, error) { return h.AddrList(lk, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("system: addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if ad.Scope == unix.RT_SCOPE_LINK && ad.IP.To4() == nil {
				continue
			}
			st.Addresses = append(st.Addresses, ad.IPNet.String())
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b InterfaceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// retry repeats a netlink dump the kernel interrupted because the table changed under it.
func retry[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
