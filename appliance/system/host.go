// Package system holds the components of the box as a host: Host (host name, resolver, interfaces and their
// DHCP leases, static routes) and TimeSync (NTP, and the clock's health). Each is a component of the orchestrator: Apply(old, new)
// is idempotent and takes the component's lock, which its own watcher takes too.
package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"toride/appliance/atomicfile"
	"toride/appliance/config"
	"toride/appliance/health"
	"toride/dataplane/link"
	"toride/dataplane/route"
)

// LinkProgrammer is what Host needs of dataplane/link.
type LinkProgrammer interface {
	Get(name string) (link.State, error)
	SetMTU(name string, mtu int) error
	SetUp(name string, up bool) error
	AddAddress(name string, p netip.Prefix) error
	AddLeasedAddress(name string, p netip.Prefix, valid time.Duration) error
	DelAddress(name string, p netip.Prefix) error
	Watch(ctx context.Context, fn func(link.Event)) error
}

// RouteProgrammer is what Host needs of dataplane/route.
type RouteProgrammer interface {
	Replace(route.Route) error
	Delete(route.Route) error
	List() ([]route.Route, error)
}

// Host is the "system" component: host name, resolver, interfaces and static routes.
//
// Interfaces named in the configuration but absent from the box (a USB NIC not plugged in, a VM without its second
// NIC) are not an error: they are reported as pending and configured when the kernel announces them. Only the
// addresses the configuration put on an interface are ever removed from it, and only torided's own routes
// (route.Protocol). Stopping torided leaves the box configured, as a router keeps its addresses when its control
// daemon restarts.
type Host struct {
	links       LinkProgrammer
	routes      RouteProgrammer
	hostname    func() (string, error)
	setHostname func(string) error
	resolvConf  string // "" leaves the resolver alone
	setSysctl   func(name, value string) error
	health      *health.Tracker
	log         *slog.Logger
	dhcp        DHCPRunner

	mu      sync.Mutex
	leases  map[string]*lease // the DHCP clients, by interface
	stopped []*lease          // clients stopped by a commit, whose goroutines Close waits for
	applied *config.Config    // the effective configuration last applied
	waiting map[string]bool   // configured interfaces absent at the last apply, and "" for routes waiting on a link

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// HostOptions are what Host needs: the kernel's links and routes, and the host name, resolver and sysctl setters.
type HostOptions struct {
	Links       LinkProgrammer
	Routes      RouteProgrammer
	Hostname    func() (string, error)
	SetHostname func(string) error
	ResolvConf  string // the resolver file to write; "" leaves the resolver alone
	SetSysctl   func(name, value string) error
	DHCP        DHCPRunner // nil: RunDHCP
	Health      *health.Tracker
	Logger      *slog.Logger
}

// NewHost returns the host component; nothing is applied until Apply.
func NewHost(o HostOptions) *Host {
	h := &Host{links: o.Links, routes: o.Routes, hostname: o.Hostname, setHostname: o.SetHostname, resolvConf: o.ResolvConf,
		setSysctl: o.SetSysctl, health: o.Health, log: o.Logger, dhcp: o.DHCP, leases: map[string]*lease{}}
	if h.dhcp == nil {
		h.dhcp = RunDHCP
	}
	return h
}

// Name implements the orchestrator's Component.
func (s *Host) Name() string { return "system" }

// Apply implements Component.
func (s *Host) Apply(ctx context.Context, old, new *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.applyLocked(old, new); err != nil {
		return err
	}
	s.applied = new
	return nil
}

func (s *Host) applyLocked(old, new *config.Config) error {
	if err := s.applyHostname(new.System.HostName); err != nil {
		return err
	}
	if s.setSysctl != nil {
		// The appliance routes between its interfaces, its tunnels and its SSL-VPN clients.
		if err := s.setSysctl("net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
	}
	var pending []string
	waiting := map[string]bool{}
	absent, err := s.applyInterfaces(old.System.Interfaces, new.System.Interfaces)
	if err != nil {
		return err
	}
	for _, name := range absent {
		pending = append(pending, "interface "+name+" is not present")
		waiting[name] = true
	}
	leaseless, err := s.applyDHCP(new)
	if err != nil {
		return err
	}
	pending = append(pending, leaseless...)
	if err := s.applyResolver(&old.System, &new.System); err != nil {
		return err
	}
	unreachable, err := s.applyRoutes(old.System.StaticRoutes, new.System.StaticRoutes)
	if err != nil {
		return err
	}
	for _, r := range unreachable {
		pending = append(pending, "route "+r+" waits for its next hop's interface")
		waiting[""] = true
	}
	s.waiting = waiting
	if len(pending) > 0 {
		s.health.Set(s.Name(), health.Pending, strings.Join(pending, "; ")+"; applied when it appears")
	} else {
		s.health.Set(s.Name(), health.OK, "")
	}
	return nil
}

func (s *Host) applyHostname(name string) error {
	if name == "" || s.setHostname == nil {
		return nil
	}
	if cur, err := s.hostname(); err == nil && cur == name {
		return nil
	}
	if err := s.setHostname(name); err != nil {
		return fmt.Errorf("set host name %q: %w", name, err)
	}
	return nil
}

// applyResolver writes the resolver file when the DNS settings or a DHCP lease ask for one: the configured name
// servers, or the leases' when none are configured. A box whose configuration never mentioned DNS and that has
// no lease with name servers keeps the file it has.
func (s *Host) applyResolver(old, new *config.System) error {
	if s.resolvConf == "" {
		return nil
	}
	empty := func(c *config.System) bool {
		return len(c.DNS.NameServers) == 0 && len(c.DNS.SearchDomains) == 0 && c.DomainName == ""
	}
	servers, domain := new.DNS.NameServers, new.DomainName
	if len(servers) == 0 {
		servers, domain = s.leaseResolver()
		if new.DomainName != "" {
			domain = new.DomainName
		}
	}
	if empty(old) && empty(new) && len(servers) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("# Written by torided from `system dns` and DHCP leases; changes here are overwritten.\n")
	search := slices.Clone(new.DNS.SearchDomains)
	if domain != "" {
		search = append([]string{domain}, search...)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, ns := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if cur, err := os.ReadFile(s.resolvConf); err == nil && bytes.Equal(cur, b.Bytes()) {
		return nil
	}
	return atomicfile.Write(s.resolvConf, b.Bytes(), 0o644)
}

// applyInterfaces moves interfaces from old to new and returns the configured ones that are absent.
func (s *Host) applyInterfaces(old, new map[string]*config.Interface) (absent []string, err error) {
	names := map[string]bool{}
	for n := range old {
		names[n] = true
	}
	for n := range new {
		names[n] = true
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		oi, ni := old[name], new[name]
		if _, err := s.links.Get(name); err != nil {
			if errors.Is(err, link.ErrNotFound) {
				if ni != nil {
					absent = append(absent, name)
				}
				continue
			}
			return nil, err
		}
		if ni == nil {
			for _, a := range oi.Addresses {
				if err := s.links.DelAddress(name, a); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := s.links.SetMTU(name, ni.MTU); err != nil {
			return nil, err
		}
		if oi != nil {
			for _, a := range oi.Addresses {
				if !slices.Contains(ni.Addresses, a) {
					if err := s.links.DelAddress(name, a); err != nil {
						return nil, err
					}
				}
			}
		}
		for _, a := range ni.Addresses {
			if err := s.links.AddAddress(name, a); err != nil {
				return nil, err
			}
		}
		if err := s.links.SetUp(name, !ni.Disable); err != nil {
			return nil, err
		}
	}
	return absent, nil
}

// applyRoutes makes torided's routes in the kernel exactly the configured ones and the leases' default routes;
// it returns those whose next hop is not reachable yet.
func (s *Host) applyRoutes(_, new map[string]*config.StaticRoute) (unreachable []string, err error) {
	want := map[route.Route]bool{}
	for dst, r := range new {
		want[route.Route{Dst: netip.MustParsePrefix(dst), Via: r.NextHop, Metric: r.Distance}] = true
	}
	for _, r := range s.leaseRoutes() {
		want[r] = true
	}
	have, err := s.routes.List()
	if err != nil {
		return nil, err
	}
	for _, r := range have {
		if !want[r] {
			if err := s.routes.Delete(r); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range slices.SortedFunc(maps.Keys(want), func(a, b route.Route) int {
		return strings.Compare(a.Dst.String()+fmt.Sprint(a.Metric), b.Dst.String()+fmt.Sprint(b.Metric))
	}) {
		if err := s.routes.Replace(r); err != nil {
			if errors.Is(err, route.ErrUnreachable) {
				unreachable = append(unreachable, r.Dst.String()+" via "+r.Via.String())
				continue
			}
			return nil, err
		}
	}
	return unreachable, nil
}

// watch re-applies the configuration whenever a link appears, until Close. Call once, after the first Apply.
func (s *Host) Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	s.watchDone = make(chan struct{})
	go func() {
		defer close(s.watchDone)
		for ctx.Err() == nil {
			err := s.links.Watch(ctx, func(e link.Event) {
				if !e.Present {
					return
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.applied == nil || !s.waiting[e.Name] && !s.waiting[""] {
					return
				}
				s.reapplyLocked("interface " + e.Name + " appeared")
			})
			if err != nil && ctx.Err() == nil {
				s.log.Warn("watching links failed; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
			}
		}
	}()
}

// reapplyLocked applies the configuration in force again, when the box changed under it (a link appeared, a
// lease came or went). Called with s.mu held.
func (s *Host) reapplyLocked(why string) {
	if err := s.applyLocked(s.applied, s.applied); err != nil {
		s.log.Error("applying the configuration again failed", "why", why, "err", err)
		s.health.Set(s.Name(), health.Degraded, why+": "+err.Error())
		return
	}
	s.log.Info("applied the configuration again", "why", why)
}

// Close stops watching links and the DHCP clients; the configuration, leases included, stays applied.
func (s *Host) Close() error {
	if s.stopWatch != nil {
		s.stopWatch()
		<-s.watchDone
		s.stopWatch = nil
	}
	s.stopDHCP()
	return nil
}
