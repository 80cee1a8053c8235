// Package xfrm programs the kernel's side of route-based IPsec tunnels: one xfrm interface per tunnel, bound by its
// if_id to the SAs and policies charon installs with the same if_id_in/if_id_out, carrying the tunnel's inside
// address and MTU, with loose reverse-path filtering (the far side may answer over the other tunnel). It also
// reads what the kernel counts per SA (bytes, packets, replay and integrity failures) for tunnel health.
//
// It also routes traffic into the tunnels: SetRoutes points each remote prefix at the interface of the tunnel
// that should carry it, so moving traffic between tunnels is one route replacement and the carrier is read from
// the routing table, never guessed.
//
// It owns only the interfaces it made (their alias is Owner) and the routes it made (routing protocol
// RouteProtocol), and never creates, flushes or deletes an SA or a policy: charon owns those.
//
// Data flow: the IPsec engine computes the desired interfaces from the configuration and calls Set after every
// commit and every charon restart; Set compares them with the kernel's and changes only the difference, so a
// second call with the same list changes nothing.
//
// A Tunnels is safe for concurrent use (one mutex around each call); its zero value is not usable (use Open).
package xfrm

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"toride/dataplane/internal/ifname"
)

// ErrXFRM is wrapped by every error of the package.
var ErrXFRM = errors.New("xfrm")

// Owner is the alias of the interfaces this package made: the ones Set may change or remove.
const Owner = "toride"

// Interface is one tunnel's xfrm interface as it should be.
type Interface struct {
	Name    string       // at most 15 bytes, as every Linux interface name
	IfID    uint32       // the CHILD_SA's if_id_in and if_id_out; not zero (the kernel reserves it)
	MTU     int          // 0 leaves the kernel's default
	Address netip.Prefix // the tunnel's inside address; the zero Prefix for none
}

func (i Interface) validate() error {
	if err := ifname.Check(i.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrXFRM, err)
	}
	switch {
	case strings.Contains(i.Name, "."):
		// The name is a component of the interface's sysctl keys (net.ipv4.conf.NAME.rp_filter).
		return fmt.Errorf("%w: interface name %q: no '.', it would split the interface's sysctl keys", ErrXFRM, i.Name)
	case i.IfID == 0:
		return fmt.Errorf("%w: %s: if_id 0 is reserved by the kernel; use 1 or more", ErrXFRM, i.Name)
	case i.MTU != 0 && (i.MTU < 576 || i.MTU > 65535):
		return fmt.Errorf("%w: %s: MTU %d: want 576 to 65535, or 0 for the kernel's default", ErrXFRM, i.Name, i.MTU)
	}
	return nil
}

// link is an interface as the kernel has it.
type link struct {
	Name      string
	Kind      string // "xfrm" for an xfrm interface
	IfID      uint32
	MTU       int
	Alias     string
	Up        bool
	Addresses []netip.Prefix
}

// kernel is what Tunnels needs of the kernel, so that the reconciler is tested over a fake.
type kernel interface {
	links() ([]link, error)
	add(Interface) error
	remove(name string) error
	setMTU(name string, mtu int) error
	addAddress(name string, p netip.Prefix) error
	removeAddress(name string, p netip.Prefix) error
	setUp(name string) error
	looseRPFilter(name string) error
	routes() (map[netip.Prefix]string, error)
	replaceRoute(dst netip.Prefix, ifname string) error
	removeRoute(dst netip.Prefix, ifname string) error
	states() ([]SAStats, error)
	removeSA(s SAStats) error
	close()
}

// SAStats is what the kernel counted for one SA.
type SAStats struct {
	Src, Dst          netip.Addr
	SPI               uint32
	IfID              uint32 // 0 for an SA of a policy-based tunnel
	Bytes, Packets    uint64
	ReplayDrops       uint32    // packets dropped as replays or out of the window
	IntegrityFailures uint32    // packets whose ICV did not verify
	Added             time.Time // when it was installed (to the second)
}

// Tunnels programs the xfrm interfaces of one network namespace.
type Tunnels struct {
	mu sync.Mutex
	k  kernel
}

// Close releases the netlink socket. The interfaces stay: Set(nil) removes them.
func (t *Tunnels) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.close()
}

// Set makes the namespace's owned xfrm interfaces exactly want: it adds the missing ones, re-creates one whose
// if_id differs (the kernel cannot change it), corrects MTU and address, brings them up with loose reverse-path
// filtering, and removes owned interfaces no longer wanted. An interface of the same name that it does not own is
// an error, and left alone.
func (t *Tunnels) Set(want []Interface) error {
	names := map[string]bool{}
	for _, w := range want {
		if err := w.validate(); err != nil {
			return err
		}
		if names[w.Name] {
			return fmt.Errorf("%w: interface %s is wanted twice", ErrXFRM, w.Name)
		}
		names[w.Name] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	have, err := t.k.links()
	if err != nil {
		return err
	}
	byName := map[string]link{}
	for _, l := range have {
		byName[l.Name] = l
	}
	var errs []error
	// Removals first: a name freed here may be wanted again below with another if_id.
	for _, l := range have {
		if l.Kind == "xfrm" && l.Alias == Owner && !names[l.Name] {
			errs = append(errs, t.k.remove(l.Name))
		}
	}
	for _, w := range want {
		errs = append(errs, t.reconcile(w, byName))
	}
	return errors.Join(errs...)
}

func (t *Tunnels) reconcile(w Interface, byName map[string]link) error {
	l, exists := byName[w.Name]
	if exists && (l.Kind != "xfrm" || l.Alias != Owner) {
		return fmt.Errorf("%w: %s exists and is not an xfrm interface this appliance made (kind %q, alias %q): rename or remove it", ErrXFRM, w.Name, l.Kind, l.Alias)
	}
	if exists && l.IfID != w.IfID {
		if err := t.k.remove(w.Name); err != nil {
			return err
		}
		exists = false
	}
	if !exists {
		if err := t.k.add(w); err != nil {
			return err
		}
		l = link{Name: w.Name, Kind: "xfrm", IfID: w.IfID, Alias: Owner}
	}
	if w.MTU != 0 && l.MTU != w.MTU {
		if err := t.k.setMTU(w.Name, w.MTU); err != nil {
			return err
		}
	}
	for _, p := range l.Addresses {
		if p != w.Address {
			if err := t.k.removeAddress(w.Name, p); err != nil {
				return err
			}
		}
	}
	if w.Address.IsValid() && !slices.Contains(l.Addresses, w.Address) {
		if err := t.k.addAddress(w.Name, w.Address); err != nil {
			return err
		}
	}
	if err := t.k.looseRPFilter(w.Name); err != nil {
		return err
	}
	if !l.Up {
		return t.k.setUp(w.Name)
	}
	return nil
}

// Stats returns the kernel's counters of every ESP SA in the namespace.
func (t *Tunnels) Stats() ([]SAStats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.k.states()
}

// RemoveStale deletes the ESP SAs bound to one of ifIDs that were installed no later than the second of the given
// time and whose SPI is not in keep, and returns how many it deleted. A charon that dies without a chance to
// clean up (SIGKILL, a crash) leaves its SAs in the kernel until their lifetime ends; its successor negotiates
// new ones and knows nothing of them. Called with the moment the running charon started and the SPIs it lists,
// it removes exactly those: the kernel counts installs in whole seconds, so an SA of that second is told apart
// by its SPI. SAs of interfaces not listed (not this appliance's) are left alone.
func (t *Tunnels) RemoveStale(ifIDs []uint32, keep map[uint32]bool, before time.Time) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	all, err := t.k.states()
	if err != nil {
		return 0, err
	}
	cut := before.Truncate(time.Second)
	n := 0
	var errs []error
	for _, s := range all {
		if s.IfID == 0 || !slices.Contains(ifIDs, s.IfID) || s.Added.After(cut) || keep[s.SPI] {
			continue
		}
		if err := t.k.removeSA(s); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// SetRoutes makes the namespace's tunnel routes exactly want: each prefix routed into the named interface, which
// must be one Set made. Prefixes routed before and not wanted now are removed; a prefix that moves to another
// interface is replaced in one step (no moment without a route).
func (t *Tunnels) SetRoutes(want map[netip.Prefix]string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	links, err := t.k.links()
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, l := range links {
		if l.Kind == "xfrm" && l.Alias == Owner {
			ours[l.Name] = true
		}
	}
	for dst, ifname := range want {
		if !dst.IsValid() || dst != dst.Masked() {
			return fmt.Errorf("%w: route %s: want a network prefix (%s)", ErrXFRM, dst, dst.Masked())
		}
		if !ours[ifname] {
			return fmt.Errorf("%w: route %s into %s: not a tunnel interface of this appliance", ErrXFRM, dst, ifname)
		}
	}
	have, err := t.k.routes()
	if err != nil {
		return err
	}
	var errs []error
	for _, dst := range slices.SortedFunc(maps.Keys(want), comparePrefix) {
		if have[dst] != want[dst] {
			errs = append(errs, t.k.replaceRoute(dst, want[dst]))
		}
	}
	for _, dst := range slices.SortedFunc(maps.Keys(have), comparePrefix) {
		if _, ok := want[dst]; !ok {
			errs = append(errs, t.k.removeRoute(dst, have[dst]))
		}
	}
	return errors.Join(errs...)
}

// Routes returns the tunnel routes the kernel has: prefix → interface.
func (t *Tunnels) Routes() (map[netip.Prefix]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.k.routes()
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
