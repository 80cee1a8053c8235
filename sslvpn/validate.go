package sslvpn

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"toride/sslvpn/pool"
)

// FieldError is one problem in Settings: where (the path as set lines spell it, dotted, e.g.
// "sslvpn.servers.main.pool"), the offending value, what is wrong and how to fix it.
type FieldError struct {
	Field   string
	Value   string
	Problem string
	Fix     string
}

// UsedNetwork is a network another part of the appliance routes, named for messages, e.g.
// "ipsec.connections.aws.remote-network 10.2.0.0/16". No address pool may overlap it.
type UsedNetwork struct {
	What   string
	Prefix netip.Prefix
}

// InterfaceNetwork is an address, with its prefix length, of one of the box's interfaces.
type InterfaceNetwork struct {
	Interface string
	Prefix    netip.Prefix
}

// ValidateOptions is what Validate needs to know of the rest of the appliance.
type ValidateOptions struct {
	// Path is the section's own path in the configuration ("sslvpn"); every FieldError's Field starts with it.
	Path string
	// Routed are the networks routed elsewhere (IPsec), in the order to report them.
	Routed []UsedNetwork
	// Interfaces are the interfaces' addresses, by interface name, then in their order.
	Interfaces []InterfaceNetwork
	// CAs are the configured CAs by name, each true when its private key is on the appliance (it can issue).
	CAs map[string]bool
	// Certificates are the configured certificates' names, sorted.
	Certificates []string
}

// Validate checks s (with its defaults) and returns every problem it has, in a stable order; nil when it is good.
func (s Settings) Validate(o ValidateOptions) []FieldError {
	v := &validator{}
	v.settings(&s, o)
	return v.errs
}

type validator struct{ errs []FieldError }

func (v *validator) add(path []string, value any, fix string, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: strings.Join(path, "."), Value: fmt.Sprint(value), Problem: fmt.Sprintf(format, args...), Fix: fix})
}

func p(parts ...string) []string { return parts }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// network checks that a prefix names an IPv4 network (no host bits).
func (v *validator) network(path []string, pfx netip.Prefix, ipv4Only bool) bool {
	switch {
	case !pfx.IsValid():
		v.add(path, "", "write it as ADDRESS/LENGTH, e.g. 10.0.0.0/24", "not a network")
	case pfx.Masked() != pfx:
		v.add(path, pfx, "use "+pfx.Masked().String(), "%s has host bits set", pfx)
	case ipv4Only && !pfx.Addr().Is4():
		v.add(path, pfx, "use an IPv4 network", "%s is not IPv4; this feature is IPv4 only", pfx)
	default:
		return true
	}
	return false
}

func (v *validator) settings(c *Settings, o ValidateOptions) {
	nets := slices.Clone(o.Routed)
	for _, name := range sortedKeys(c.Services) {
		svc := c.Services[name]
		for _, n := range svc.LocalNetworks {
			if v.network(p(o.Path, "services", name, "local-network"), n, true) {
				nets = append(nets, UsedNetwork{o.Path + ".services." + name + ".local-network " + n.String(), n})
			}
		}
	}
	type listen struct {
		what string
		addr netip.Addr
		port int
	}
	var listens []listen
	ids := map[string]string{}
	for _, name := range sortedKeys(c.Servers) {
		s := c.Servers[name]
		base := p(o.Path, "servers", name)
		at := func(leaf ...string) []string { return append(slices.Clip(base), leaf...) }
		if s.ID != "" {
			if other, dup := ids[s.ID]; dup {
				v.add(at("id"), s.ID, "give each server its own id", "server %s has the same id", other)
			}
			ids[s.ID] = name
		}
		var svc *ServiceSettings
		switch {
		case s.Service == "":
			v.add(at("service"), "", "set "+strings.Join(base, " ")+" service NAME (an sslvpn services entry)", "a server needs the VPN service it serves")
		case c.Services[s.Service] == nil:
			v.add(at("service"), s.Service, "use one of: "+strings.Join(sortedKeys(c.Services), ", "), "no sslvpn service %q", s.Service)
		default:
			svc = c.Services[s.Service]
			for _, other := range sortedKeys(c.Servers) {
				if other < name && c.Servers[other].Service == s.Service {
					v.add(at("service"), s.Service, "create another VPN service for a second server", "service %q already has server %s; one SSL-VPN per VPN service", s.Service, other)
				}
			}
		}
		if !s.Pool.IsValid() {
			v.add(at("pool"), "", "set "+strings.Join(base, " ")+" pool 10.8.0.0/24", "a server needs a client address pool")
		} else if v.network(at("pool"), s.Pool, true) {
			if got := Capacity(s.Pool, s.Topology); got < s.MaxSessions {
				how := "one address each"
				if s.Topology == pool.Net30 {
					how = "a /30 each, one kept for the server"
				}
				clients := "clients"
				if got == 1 {
					clients = "client"
				}
				v.add(at("pool"), s.Pool, fmt.Sprintf("use a /%d or larger", smallestPool(s.MaxSessions, s.Topology)),
					"%s holds %d %s in %s topology (%s), fewer than max-sessions %d", s.Pool, got, clients, s.Topology, how, s.MaxSessions)
			}
			for _, n := range nets {
				if n.Prefix.Overlaps(s.Pool) {
					v.add(at("pool"), s.Pool, "choose a pool that overlaps none of the networks it routes to", "%s overlaps %s", s.Pool, n.What)
				}
			}
			for _, in := range o.Interfaces {
				if in.Prefix.Masked().Overlaps(s.Pool) {
					v.add(at("pool"), s.Pool, "choose a pool outside the interfaces' networks", "%s overlaps interface %s network %s", s.Pool, in.Interface, in.Prefix.Masked())
				}
			}
			nets = append(nets, UsedNetwork{strings.Join(at("pool"), ".") + " " + s.Pool.String(), s.Pool})
		}
		if s.MaxPerUser > s.MaxSessions {
			v.add(at("max-sessions-per-user"), s.MaxPerUser, fmt.Sprintf("set it to %d or less, or raise max-sessions", s.MaxSessions),
				"%d sessions for one user exceed the server's max-sessions %d", s.MaxPerUser, s.MaxSessions)
		}
		hasKey, caExists := o.CAs[s.CA]
		if s.CA == "" {
			v.add(at("ca"), "", "set "+strings.Join(base, " ")+" ca NAME (a pki ca entry)", "a server needs the CA that issues its client certificates")
		} else if !caExists {
			v.add(at("ca"), s.CA, "use one of: "+strings.Join(slices.Sorted(maps.Keys(o.CAs)), ", "), "no pki ca %q", s.CA)
		}
		if s.Certificate != "" && !slices.Contains(o.Certificates, s.Certificate) {
			v.add(at("certificate"), s.Certificate, "use one of: "+strings.Join(o.Certificates, ", "), "no pki certificate %q", s.Certificate)
		}
		if s.Certificate == "" && caExists && !hasKey {
			v.add(at("certificate"), "", "set "+strings.Join(base, " ")+" certificate NAME (a pki certificates entry)",
				"the server needs a certificate, and CA %s cannot issue one (its key is not on the appliance)", s.CA)
		}
		for _, tc := range s.TrustedCAs {
			if _, ok := o.CAs[tc]; !ok {
				v.add(at("trusted-ca"), tc, "use one of: "+strings.Join(slices.Sorted(maps.Keys(o.CAs)), ", "), "no pki ca %q", tc)
			}
		}
		if s.Disable {
			continue
		}
		var addr netip.Addr
		if svc != nil {
			addr = svc.ExternalAddress
		}
		ports := []listen{}
		if !s.OpenVPN.Disable {
			ports = append(ports, listen{name + " openvpn tcp", addr, s.OpenVPN.TCPPort}, listen{name + " openvpn udp", addr, -s.OpenVPN.UDPPort})
		}
		if !s.AnyConnect.Disable {
			// AnyConnect shares the TCP port with OpenVPN by design, so only a clash with another server counts.
			if s.OpenVPN.Disable || s.AnyConnect.Port != s.OpenVPN.TCPPort {
				ports = append(ports, listen{name + " anyconnect tcp", addr, s.AnyConnect.Port})
			}
			if !s.AnyConnect.DisableDTLS {
				if !s.OpenVPN.Disable && s.AnyConnect.Port == s.OpenVPN.UDPPort {
					v.add(at("openvpn", "udp-port"), s.OpenVPN.UDPPort, "move openvpn udp-port (1194 is OpenVPN's own) or set anyconnect disable-dtls",
						"OpenVPN over UDP and AnyConnect's DTLS cannot share UDP port %d", s.OpenVPN.UDPPort)
				} else {
					ports = append(ports, listen{name + " anyconnect dtls", addr, -s.AnyConnect.Port})
				}
			}
			v.groups(o, name, s, &nets)
		}
		for _, l := range ports {
			for _, o := range listens {
				if o.port == l.port && (o.addr == l.addr || !o.addr.IsValid() || !l.addr.IsValid()) {
					v.add(at(), name, "give each server its own port or external address", "%s listens on the same port %d as %s", l.what, abs(l.port), o.what)
				}
			}
		}
		listens = append(listens, ports...)
		for _, d := range s.DNS {
			if !d.Is4() {
				v.add(at("dns"), d, "use an IPv4 address", "%s is not IPv4", d)
			}
		}
	}
}

// groups checks a server's AnyConnect profiles: their pools are networks of their own, and the default exists.
func (v *validator) groups(o ValidateOptions, name string, s *ServerSettings, nets *[]UsedNetwork) {
	base := p(o.Path, "servers", name, "anyconnect")
	if d := s.AnyConnect.DefaultGroup; d != "" && s.AnyConnect.Groups[d] == nil {
		v.add(append(slices.Clip(base), "default-group"), d, "use one of: "+strings.Join(sortedKeys(s.AnyConnect.Groups), ", "), "no group %q", d)
	}
	for _, gname := range sortedKeys(s.AnyConnect.Groups) {
		g := s.AnyConnect.Groups[gname]
		gp := append(slices.Clip(base), "groups", gname)
		for _, n := range g.LocalNetworks {
			v.network(append(slices.Clip(gp), "local-network"), n, true)
		}
		if !g.Pool.IsValid() {
			continue
		}
		if v.network(append(slices.Clip(gp), "pool"), g.Pool, true) {
			if Capacity(g.Pool, s.Topology) < 1 {
				v.add(append(slices.Clip(gp), "pool"), g.Pool, "use a /29 or larger", "%s holds no client", g.Pool)
			}
			for _, n := range *nets {
				if n.Prefix.Overlaps(g.Pool) {
					v.add(append(slices.Clip(gp), "pool"), g.Pool, "choose a pool that overlaps nothing else", "%s overlaps %s", g.Pool, n.What)
				}
			}
			*nets = append(*nets, UsedNetwork{strings.Join(gp, ".") + ".pool " + g.Pool.String(), g.Pool})
		}
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
