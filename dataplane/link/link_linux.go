// Package link programs network interfaces through netlink in one network namespace: addresses, MTU and
// administrative state; and it reports links appearing and disappearing, so configuration for an interface that
// is not there yet can be applied when it arrives.
//
// A Links is safe for concurrent use (the netlink handle serializes requests).
package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"toride/dataplane/internal/nlconv"
)

// ErrNotFound is returned for a link that does not exist.
var ErrNotFound = errors.New("link: no such interface")

// Links programs the links of one network namespace.
type Links struct {
	ns     netns.NsHandle
	h      *netlink.Handle
	ownsNS bool // ns was opened by OpenPath and is closed with the Links
}

// Open returns a Links for the namespace ns (netns.None() for the caller's own). The handle is the caller's to
// close after Close.
func Open(ns netns.NsHandle) (*Links, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("link: netlink: %w", err)
	}
	return &Links{ns: ns, h: h}, nil
}

// OpenPath returns a Links for the network namespace bound at path ("" is the caller's own). Unlike Open, the
// namespace handle is the Links' own: Close releases it.
func OpenPath(path string) (*Links, error) {
	if path == "" {
		return Open(netns.None())
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("link: open network namespace %s: %w", path, err)
	}
	l, err := Open(ns)
	if err != nil {
		ns.Close()
		return nil, err
	}
	l.ownsNS = true
	return l, nil
}

// Close releases the netlink handle, and the namespace handle if OpenPath opened it.
func (l *Links) Close() {
	l.h.Close()
	if l.ownsNS {
		l.ns.Close()
	}
}

// State is what the kernel says about a link.
type State struct {
	Name      string
	Index     int
	Up        bool // administratively up
	Running   bool // carrier
	MTU       int
	Addresses []netip.Prefix
}

func (l *Links) byName(name string) (netlink.Link, error) {
	lk, err := l.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil, fmt.Errorf("link: %s: %w", name, err)
	}
	return lk, nil
}

// Get returns a link's state.
func (l *Links) Get(name string) (State, error) {
	lk, err := l.byName(name)
	if err != nil {
		return State{}, err
	}
	a := lk.Attrs()
	st := State{Name: a.Name, Index: a.Index, Up: a.Flags&net.FlagUp != 0, Running: a.OperState == netlink.OperUp || a.RawFlags&unix.IFF_RUNNING != 0, MTU: a.MTU}
	addrs, err := nlconv.RetryDump(func() ([]netlink.Addr, error) { return l.h.AddrList(lk, netlink.FAMILY_ALL) })
	if err != nil {
		return State{}, fmt.Errorf("link: addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		if p, ok := nlconv.Prefix(ad.IPNet); ok && !(ad.Scope == unix.RT_SCOPE_LINK && p.Addr().Is6()) {
			st.Addresses = append(st.Addresses, p)
		}
	}
	return st, nil
}

// Names returns the names of every link in the namespace.
func (l *Links) Names() ([]string, error) {
	links, err := nlconv.RetryDump(l.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("link: list: %w", err)
	}
	names := make([]string, 0, len(links))
	for _, lk := range links {
		names = append(names, lk.Attrs().Name)
	}
	return names, nil
}

// SetMTU sets a link's MTU if it differs.
func (l *Links) SetMTU(name string, mtu int) error {
	lk, err := l.byName(name)
	if err != nil {
		return err
	}
	if lk.Attrs().MTU == mtu {
		return nil
	}
	if err := l.h.LinkSetMTU(lk, mtu); err != nil {
		return fmt.Errorf("link: set MTU %d on %s: %w", mtu, name, err)
	}
	return nil
}

// SetUp sets a link administratively up or down.
func (l *Links) SetUp(name string, up bool) error {
	lk, err := l.byName(name)
	if err != nil {
		return err
	}
	if (lk.Attrs().Flags&net.FlagUp != 0) == up {
		return nil
	}
	if up {
		err = l.h.LinkSetUp(lk)
	} else {
		err = l.h.LinkSetDown(lk)
	}
	if err != nil {
		return fmt.Errorf("link: set %s up=%v: %w", name, up, err)
	}
	return nil
}

// AddAddress adds an address to a link; an address already there is not an error.
func (l *Links) AddAddress(name string, p netip.Prefix) error {
	lk, err := l.byName(name)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: nlconv.IPNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // configured addresses are meant to be used at once
	}
	if err := l.h.AddrAdd(lk, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("link: add %s to %s: %w", p, name, err)
	}
	return nil
}

// AddLeasedAddress puts an address on a link for as long as a lease holds it: the kernel removes it by itself
// when valid has passed, so an address whose lease nobody renews (its daemon stopped) does not outlive the lease.
// Called again, it replaces the lifetime (a renewal).
func (l *Links) AddLeasedAddress(name string, p netip.Prefix, valid time.Duration) error {
	lk, err := l.byName(name)
	if err != nil {
		return err
	}
	secs := int(max(valid, time.Second) / time.Second)
	a := &netlink.Addr{IPNet: nlconv.IPNet(p), ValidLft: secs, PreferedLft: secs}
	if err := l.h.AddrReplace(lk, a); err != nil {
		return fmt.Errorf("link: add %s to %s for %s: %w", p, name, valid, err)
	}
	return nil
}

// DelAddress removes an address from a link; an address that is not there is not an error.
func (l *Links) DelAddress(name string, p netip.Prefix) error {
	lk, err := l.byName(name)
	if err != nil {
		return err
	}
	if err := l.h.AddrDel(lk, &netlink.Addr{IPNet: nlconv.IPNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("link: remove %s from %s: %w", p, name, err)
	}
	return nil
}

// SyncLabelled makes the IPv4 addresses on link name that carry label exactly want, each as a host address (/32),
// and leaves every address with another label alone. A component marks its addresses on a shared link (the
// loopback) this way, so that it finds its own again after a restart and never touches anyone else's. Labels
// must start with the link's name ("lo:toride"), as the kernel requires.
func (l *Links) SyncLabelled(name, label string, want []netip.Addr) error {
	lk, err := l.byName(name)
	if err != nil {
		return err
	}
	have, err := nlconv.RetryDump(func() ([]netlink.Addr, error) { return l.h.AddrList(lk, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("link: addresses of %s: %w", name, err)
	}
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		wanted[a] = true
	}
	var errs []error
	for _, a := range have {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.Label != label {
			continue
		}
		ip = ip.Unmap()
		if wanted[ip] {
			delete(wanted, ip)
			continue
		}
		if err := l.h.AddrDel(lk, &a); err != nil {
			errs = append(errs, fmt.Errorf("link: remove %s from %s: %w", ip, name, err))
		}
	}
	for a := range wanted {
		addr := &netlink.Addr{IPNet: nlconv.IPNet(netip.PrefixFrom(a, 32)), Label: label}
		if err := l.h.AddrReplace(lk, addr); err != nil {
			errs = append(errs, fmt.Errorf("link: add %s to %s: %w", a, name, err))
		}
	}
	return errors.Join(errs...)
}

// Event is a link appearing (Present) or disappearing.
type Event struct {
	Name    string
	Present bool
}

// Watch calls fn for every link that appears or disappears until ctx ends, and once for every link present when
// it starts. fn runs on Watch's goroutine. Watch returns when ctx ends or the subscription fails.
func (l *Links) Watch(ctx context.Context, fn func(Event)) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	defer stop()
	errc := make(chan error, 1)
	ns := l.ns
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace:    &ns,
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("link: subscribe: %w", err)
	}
	present := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("link: subscription: %w", err)
		case u, ok := <-updates:
			if !ok {
				return errors.New("link: subscription closed")
			}
			name := u.Attrs().Name
			now := u.Header.Type == unix.RTM_NEWLINK
			if present[name] == now {
				continue // a change of flags or counters, not of presence
			}
			if now {
				present[name] = true
			} else {
				delete(present, name)
			}
			fn(Event{Name: name, Present: now})
		}
	}
}
