package system

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"toride/appliance/config"
	"toride/dataplane/dhcp4"
	"toride/dataplane/route"
)

// DHCPRunner keeps a DHCP lease on one interface until ctx ends, reporting each lease as it changes (nil when it
// is lost), one report at a time. RunDHCP is the real one.
type DHCPRunner func(ctx context.Context, ifname, hostname string, log *slog.Logger, report func(*dhcp4.Lease))

// RunDHCP is the DHCPRunner of dataplane/dhcp4: a raw socket on the interface.
func RunDHCP(ctx context.Context, ifname, hostname string, log *slog.Logger, report func(*dhcp4.Lease)) {
	(&dhcp4.Client{Interface: ifname, HostName: hostname, Log: log, Report: report}).Run(ctx)
}

// dhcpMetric is the default route's metric from a lease: above a static default route's (distance 1 to 255
// would have to be set that high to lose to it), so that a configured gateway always wins, as in VyOS.
const dhcpMetric = 210

// lease is one interface's DHCP client and what it put on the box.
type lease struct {
	cancel context.CancelFunc
	done   chan struct{}
	got    *dhcp4.Lease // the last report; nil while there is no lease
	onLink netip.Prefix // the address put on the interface from it
	until  time.Time    // the expiry the address was given (zero: none, an infinite lease)
}

// applyDHCP starts a client on every present, enabled interface configured for DHCP and stops the others; it
// puts each lease's address on its interface (routes and resolver follow in applyRoutes and applyResolver), and
// returns the interfaces still waiting for a lease. Called with s.mu held.
func (s *Host) applyDHCP(cfg *config.Config) (waiting []string, err error) {
	want := func(name string) bool {
		ifc := cfg.System.Interfaces[name]
		return ifc != nil && ifc.DHCP && !ifc.Disable
	}
	for _, name := range slices.Sorted(maps.Keys(s.leases)) {
		if l := s.leases[name]; !want(name) {
			// Its goroutine may be about to report: the report sees it is no longer the interface's and does nothing.
			l.cancel()
			delete(s.leases, name)
			s.stopped = append(s.stopped, l)
			if l.onLink.IsValid() {
				if err := s.links.DelAddress(name, l.onLink); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.System.Interfaces)) {
		if !want(name) {
			continue
		}
		if _, err := s.links.Get(name); err != nil {
			continue // absent: applyInterfaces reported it, and the link watch applies again when it comes
		}
		l := s.leases[name]
		if l == nil {
			l = s.startDHCP(name, cfg.System.HostName)
		}
		var addr netip.Prefix
		var until time.Time
		if l.got != nil {
			addr = l.got.Address
			if l.got.Duration > 0 {
				until = l.got.Obtained.Add(l.got.Duration)
			}
		} else {
			waiting = append(waiting, "interface "+name+" waits for a DHCP lease")
		}
		if addr == l.onLink && until.Equal(l.until) {
			continue
		}
		if l.onLink.IsValid() && addr != l.onLink {
			if err := s.links.DelAddress(name, l.onLink); err != nil {
				return nil, err
			}
		}
		l.onLink, l.until = netip.Prefix{}, time.Time{}
		switch {
		case !addr.IsValid():
		case until.IsZero():
			if err := s.links.AddAddress(name, addr); err != nil {
				return nil, err
			}
		default:
			// The address lives as long as the lease: if torided stops renewing it, the kernel takes it away.
			if err := s.links.AddLeasedAddress(name, addr, time.Until(until)); err != nil {
				return nil, err
			}
		}
		if addr.IsValid() {
			l.onLink, l.until = addr, until
		}
	}
	return waiting, nil
}

func (s *Host) startDHCP(name, hostname string) *lease {
	ctx, cancel := context.WithCancel(context.Background())
	l := &lease{cancel: cancel, done: make(chan struct{})}
	s.leases[name] = l
	go func() {
		defer close(l.done)
		s.dhcp(ctx, name, hostname, s.log, func(got *dhcp4.Lease) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.leases[name] != l {
				return // stopped since
			}
			l.got = got
			if s.applied == nil {
				return // the first Apply, under way, puts it in place
			}
			s.reapplyLocked("DHCP lease of " + name)
		})
	}()
	return l
}

// leaseRoutes are the default routes the leases give.
func (s *Host) leaseRoutes() []route.Route {
	var out []route.Route
	for _, name := range slices.Sorted(maps.Keys(s.leases)) {
		if g := s.leases[name].got; g != nil && g.Router.IsValid() {
			out = append(out, route.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: g.Router, Metric: dhcpMetric})
		}
	}
	return out
}

// leaseResolver is what the leases say of name servers and the domain, interface by interface.
func (s *Host) leaseResolver() (servers []netip.Addr, domain string) {
	for _, name := range slices.Sorted(maps.Keys(s.leases)) {
		if g := s.leases[name].got; g != nil {
			servers = append(servers, g.DNS...)
			if domain == "" {
				domain = g.Domain
			}
		}
	}
	return servers, domain
}

// stopDHCP stops every client and waits for them; the addresses stay, as the rest of the configuration does.
func (s *Host) stopDHCP() {
	s.mu.Lock()
	ls := append(slices.Collect(maps.Values(s.leases)), s.stopped...)
	clear(s.leases)
	s.stopped = nil
	s.mu.Unlock()
	for _, l := range ls {
		l.cancel()
		<-l.done
	}
}
