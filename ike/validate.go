package ike

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"toride/ike/internal/fielderr"
)

// ErrInvalidConfig is wrapped by every validation error.
var ErrInvalidConfig = errors.New("ike: invalid configuration")

// FieldError is one problem in a Config: which field (its path below the ipsec section, as set lines name it:
// "connections.aws.tunnels.tunnel2.pre-shared-key"), the offending value, which rule it broke and how to fix it.
// Secret values (PSKs) are described, never shown. errors.Is(err, ErrInvalidConfig) holds.
type FieldError = fielderr.Error

// ValidationError carries every problem Validate found, in the order of the fields.
type ValidationError = fielderr.List

// NamedPrefix is a prefix owned by another part of the appliance (an SSL-VPN address pool, say), which IPsec
// networks must not overlap.
type NamedPrefix struct {
	Name   string // shown in errors, e.g. "sslvpn.pool"
	Prefix netip.Prefix
}

// ValidateOptions carries what Validate needs to know about the rest of the appliance.
type ValidateOptions struct {
	// Reserved are prefixes used elsewhere (SSL-VPN pools); local, remote and inside networks must not overlap
	// them.
	Reserved []NamedPrefix
}

// Validate checks c (after Normalize) against the cloud's rules and the engine's own limits, and returns every
// problem at once as a *ValidationError, or nil. Each FieldError's Field is the field's path below the `ipsec`
// section of the appliance's configuration, e.g. "connections.aws.tunnels.tunnel1.pre-shared-key". A disabled
// connection is only checked for its shape (its tunnels), since it is not loaded.
func (c Config) Validate() error { return c.ValidateWith(ValidateOptions{}) }

// ValidateWith is Validate that also checks overlaps with prefixes used elsewhere on the appliance. It reports
// the problems of Problems, the shape's first.
func (c Config) ValidateWith(opts ValidateOptions) error {
	shape, rules := c.Problems(opts)
	if len(shape)+len(rules) == 0 {
		return nil
	}
	return fielderr.NewList(ErrInvalidConfig, append(shape, rules...))
}

// Problems returns every problem of c (after Normalize) in two parts: shape, what every connection needs whether
// it is loaded or not (one or two tunnels, a preferred one among them), and rules, the cloud's rules and the
// engine's limits, which only the enabled connections are held to. Each part is in the order of the connections'
// names. The appliance reports the shape with the rest of its configuration's structure and the rules last.
func (c Config) Problems(opts ValidateOptions) (shape, rules []*FieldError) {
	n := c.Normalize()
	s, r := &validator{}, &validator{}
	remotes := map[netip.Addr]string{}
	insides := map[netip.Prefix]string{}
	var asnOf string                        // the first BGP connection: the appliance has one BGP speaker, hence one ASN
	remoteNets := map[netip.Prefix]string{} // the enabled connections' remote networks → the connection
	for _, name := range slices.Sorted(maps.Keys(n.Connections)) {
		conn := n.Connections[name]
		if conn == nil {
			continue
		}
		path := "connections." + name
		s.shape(path, conn)
		if conn.Disable {
			continue
		}
		r.connection(path, name, conn, opts)
		// One route per remote network: two connections cannot both carry one.
		for _, p := range conn.RemoteNetworks {
			for q, other := range remoteNets {
				if p.IsValid() && p.Overlaps(q) {
					r.add(path+".remote-network", p.String(), "overlaps remote network "+q.String()+" of connection "+other,
						"a cloud network is reached over one connection: remove it from one of them")
				}
			}
		}
		for _, p := range conn.RemoteNetworks {
			remoteNets[p.Masked()] = name
		}
		if conn.Routing == RoutingBGP {
			if first := n.Connections[asnOf]; asnOf != "" && first.BGP.LocalASN != conn.BGP.LocalASN {
				r.add(path+".bgp.local-asn", fmt.Sprint(conn.BGP.LocalASN),
					fmt.Sprintf("connection %s uses local ASN %d: the appliance speaks BGP as one AS", asnOf, first.BGP.LocalASN),
					fmt.Sprintf("use %d here too", first.BGP.LocalASN))
			} else if asnOf == "" {
				asnOf = name
			}
		}
		for _, tn := range conn.TunnelNames() {
			t := conn.Tunnels[tn]
			if t == nil {
				continue
			}
			tpath := path + ".tunnels." + tn
			if t.RemoteAddress.IsValid() {
				if prev, dup := remotes[t.RemoteAddress]; dup {
					r.add(tpath+".remote-address", t.RemoteAddress.String(),
						"another tunnel ("+prev+") already uses this cloud endpoint",
						"each tunnel needs its own remote outside address")
				} else {
					remotes[t.RemoteAddress] = tpath
				}
			}
			if t.InsideCIDR.IsValid() {
				if prev, dup := insides[t.InsideCIDR.Masked()]; dup {
					r.add(tpath+".inside-cidr", t.InsideCIDR.String(),
						"another tunnel ("+prev+") already uses this inside CIDR",
						"inside CIDRs must be unique on the appliance")
				} else {
					insides[t.InsideCIDR.Masked()] = tpath
				}
			}
		}
	}
	return s.errs, r.errs
}

type validator struct{ errs []*FieldError }

func (v *validator) add(field, value, problem, fix string) {
	v.errs = append(v.errs, fielderr.New(ErrInvalidConfig, field, value, problem, fix))
}

var connNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// shape checks what every connection needs, loaded or not: one or two tunnels, and a preferred one among them.
func (v *validator) shape(path string, c *Connection) {
	if n := len(c.Tunnels); n < 1 || n > 2 {
		v.add(path+".tunnels", fmt.Sprint(n), "a connection has one or two tunnels, not "+fmt.Sprint(n),
			"configure tunnel1 and tunnel2 as the cloud's configuration file gives them")
	}
	if pref := c.Failover.Preferred; pref != "" && c.Tunnels[pref] == nil {
		v.add(path+".failover.preferred", pref, fmt.Sprintf("no tunnel %q in this connection", pref),
			"use one of: "+strings.Join(c.TunnelNames(), ", "))
	}
}

func (v *validator) connection(path, name string, c *Connection, opts ValidateOptions) {
	if !connNameRE.MatchString(name) {
		v.add(path+".name", quote(name), "a connection name must be 1–32 characters of [a-z0-9-] starting with a letter",
			`use a name like "aws-tokyo"`)
	}
	if len(c.LocalNetworks) == 0 {
		v.add(path+".local-network", "[]", "at least one local network is required",
			"list the site prefixes that reach the cloud, e.g. 10.1.0.0/16")
	}
	v.prefixes(path+".local-network", c.LocalNetworks, opts)
	switch c.Routing {
	case RoutingStatic:
		if len(c.RemoteNetworks) == 0 {
			v.add(path+".remote-network", "[]", "static routing needs the cloud's prefixes",
				"list the cloud (VPC) prefixes, e.g. 10.2.0.0/16, or use routing mode bgp")
		}
	case RoutingBGP:
		if c.BGP.LocalASN == 0 || c.BGP.LocalASN > 2147483647 {
			v.add(path+".bgp.local-asn", fmt.Sprint(c.BGP.LocalASN), "the customer gateway ASN must be 1–2147483647",
				"use your private ASN, e.g. 65000")
		}
		if len(c.BGP.Password) > 80 {
			v.add(path+".bgp.password", "(secret)", fmt.Sprintf("the TCP MD5 key has %d characters; the kernel takes at most 80", len(c.BGP.Password)),
				"use a shorter key, the same on the cloud's side")
		}
		if c.BGP.RemoteASN == 0 {
			v.add(path+".bgp.remote-asn", "0", "the cloud's ASN is required with BGP routing",
				"copy it from the cloud's configuration file (e.g. 64512)")
		}
	default:
		v.add(path+".routing", quote(string(c.Routing)), "unknown routing mode", `use "static" or "bgp"`)
	}
	v.prefixes(path+".remote-network", c.RemoteNetworks, opts)
	for _, l := range c.LocalNetworks {
		for _, r := range c.RemoteNetworks {
			if l.IsValid() && r.IsValid() && l.Overlaps(r) {
				v.add(path+".local-network", l.String(),
					"overlaps remote network "+r.String(), "local and remote networks must be disjoint")
			}
		}
	}
	switch c.StartAction {
	case StartupStart, StartupAdd:
	default:
		v.add(path+".start-action", quote(string(c.StartAction)), "unknown startup action", `use "start" or "add"`)
	}
	for _, tn := range c.TunnelNames() {
		if t := c.Tunnels[tn]; t != nil {
			v.tunnel(path+".tunnels."+tn, c, t, opts)
		}
	}
	ka := c.Keepalive
	if !ka.Disable {
		if ka.Interval < Duration(100*time.Millisecond) || ka.Interval > Duration(5*time.Minute) {
			v.add(path+".keepalive.interval", ka.Interval.String(), "the probe interval must be 100ms–5m",
				"leave it empty for 0.2 s; at most 5 s keeps the cloud from idling the tunnel out")
		}
		if ka.Timeout < Duration(100*time.Millisecond) || ka.Timeout > Duration(time.Minute) || ka.Timeout > 100*ka.Interval {
			v.add(path+".keepalive.timeout", ka.Timeout.String(), "the probe timeout must be 100ms–60s and at most 100 intervals",
				"leave it empty for 1 s, or set it above the path's round-trip time")
		}
		if ka.DownAfter < 1 || ka.DownAfter > 100 {
			v.add(path+".keepalive.down-after", fmt.Sprint(ka.DownAfter), "must be 1–100 lost probes",
				"use 3, or leave it empty")
		}
	}
	if c.Failover.HoldDown < 0 {
		v.add(path+".failover.hold-down", c.Failover.HoldDown.String(), "must not be negative", "use 30s, or leave it empty")
	}
}

func (v *validator) prefixes(path string, ps []netip.Prefix, opts ValidateOptions) {
	for _, p := range ps {
		f := path
		if !p.IsValid() || !p.Addr().Is4() {
			v.add(f, p.String(), "not an IPv4 prefix (the cloud's VPN carries IPv4 only)", "write it like 10.1.0.0/16")
			continue
		}
		if p != p.Masked() {
			v.add(f, p.String(), "host bits are set", "use "+p.Masked().String())
		}
		for _, r := range opts.Reserved {
			if r.Prefix.IsValid() && p.Overlaps(r.Prefix) {
				v.add(f, p.String(), "overlaps "+r.Name+" "+r.Prefix.String(), "choose prefixes that do not overlap "+r.Name)
			}
		}
	}
}

var (
	linkLocal      = netip.MustParsePrefix("169.254.0.0/16")
	reservedInside = []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/30"),
		netip.MustParsePrefix("169.254.1.0/30"),
		netip.MustParsePrefix("169.254.2.0/30"),
		netip.MustParsePrefix("169.254.3.0/30"),
		netip.MustParsePrefix("169.254.4.0/30"),
		netip.MustParsePrefix("169.254.5.0/30"),
		netip.MustParsePrefix("169.254.169.252/30"),
	}
	pskRE = regexp.MustCompile(`^[A-Za-z0-9._]{8,64}$`)
)

func (v *validator) tunnel(path string, c *Connection, t *Tunnel, opts ValidateOptions) {
	if !t.LocalAddress.IsValid() || !t.LocalAddress.Is4() {
		v.add(path+".local-address", addrString(t.LocalAddress), "the appliance's outside IPv4 address is required",
			"use the WAN address the tunnel leaves from (behind NAT: the private one)")
	}
	if !t.RemoteAddress.IsValid() || !t.RemoteAddress.Is4() {
		v.add(path+".remote-address", addrString(t.RemoteAddress), "the cloud endpoint's outside IPv4 address is required",
			"copy it from the cloud's configuration file (Outside IP Address, Virtual Private Gateway)")
	}
	switch {
	case t.PreSharedKey == "":
		v.add(path+".pre-shared-key", "(empty)", "a pre-shared key is required", "copy it from the cloud's configuration file")
	case !pskRE.MatchString(string(t.PreSharedKey)):
		v.add(path+".pre-shared-key", fmt.Sprintf("(%d characters, not shown)", len(t.PreSharedKey)),
			"a pre-shared key must be 8–64 characters of letters, digits, '.' and '_'",
			"use the key the cloud generated, or generate one of 32 such characters")
	case t.PreSharedKey[0] == '0':
		v.add(path+".pre-shared-key", fmt.Sprintf("(%d characters, not shown)", len(t.PreSharedKey)),
			"the cloud rejects pre-shared keys that start with '0'", "choose a key that starts with another character")
	}
	switch p := t.InsideCIDR; {
	case !p.IsValid():
		v.add(path+".inside-cidr", "(empty)", "the tunnel's inside /30 is required",
			"copy it from the cloud's configuration file, e.g. 169.254.10.0/30")
	case !p.Addr().Is4() || p.Bits() != 30 || !linkLocal.Contains(p.Addr()):
		v.add(path+".inside-cidr", p.String(), "must be a /30 inside 169.254.0.0/16", "use e.g. 169.254.10.0/30")
	default:
		if p != p.Masked() {
			v.add(path+".inside-cidr", p.String(), "host bits are set", "use "+p.Masked().String())
		}
		for _, r := range reservedInside {
			if r.Overlaps(p) {
				v.add(path+".inside-cidr", p.String(), "the cloud reserves "+r.String(), "choose another /30 in 169.254.0.0/16")
			}
		}
		for _, r := range opts.Reserved {
			if r.Prefix.IsValid() && r.Prefix.Overlaps(p) {
				v.add(path+".inside-cidr", p.String(), "overlaps "+r.Name+" "+r.Prefix.String(), "choose another /30")
			}
		}
	}
	switch t.IKEVersion {
	case 1:
		if len(c.LocalNetworks) > 1 || len(c.RemoteNetworks) > 1 {
			v.add(path+".ike-version", "1",
				"IKEv1 negotiates one local and one remote network per SA, and the cloud accepts one SA pair per tunnel",
				"summarize to one local and one remote network, or use IKE version 2")
		}
		for _, e := range t.IKE.Encryption {
			if e == AES128GCM16 || e == AES256GCM16 {
				v.add(path+".ike.encryption", string(e), "IKEv1 cannot protect the IKE SA with AES-GCM",
					"use aes128 or aes256 in phase 1, or IKE version 2")
			}
		}
	case 2:
	default:
		v.add(path+".ike-version", fmt.Sprint(t.IKEVersion), "unknown IKE version", "use 1 (main mode) or 2")
	}
	v.phase(path+".ike", t.IKE, 900*time.Second, 28800*time.Second)
	v.phase(path+".esp", t.ESP, 900*time.Second, 3600*time.Second)
	if t.ESP.Lifetime >= t.IKE.Lifetime {
		v.add(path+".esp.lifetime", t.ESP.Lifetime.String(),
			"the phase 2 lifetime must be shorter than the phase 1 lifetime ("+t.IKE.Lifetime.String()+")",
			"use 3600s for phase 2 and 28800s for phase 1")
	}
	if t.RekeyMargin < Duration(60*time.Second) || t.RekeyMargin > t.ESP.Lifetime/2 {
		v.add(path+".rekey-margin", t.RekeyMargin.String(), "the rekey margin must be 60s–half the phase 2 lifetime",
			"use 540s, or leave it empty")
	}
	if t.RekeyFuzz > 100 {
		v.add(path+".rekey-fuzz", fmt.Sprint(t.RekeyFuzz), "the rekey fuzz is a percentage 0–100", "use 100, or leave it empty")
	}
	if t.ReplayWindow < 64 || t.ReplayWindow > 2048 {
		v.add(path+".replay-window", fmt.Sprint(t.ReplayWindow), "the replay window must be 64–2048 packets",
			"use 1024, or leave it empty")
	}
	if t.BGP.ASPathPrepend < 0 || t.BGP.ASPathPrepend > 10 {
		v.add(path+".bgp.as-path-prepend", fmt.Sprint(t.BGP.ASPathPrepend), "the AS path prepend must be 0–10",
			"use 1 to 3 on the tunnel the cloud should avoid, or leave it empty")
	}
	if t.MTU < 576 || t.MTU > 9000 {
		v.add(path+".mtu", fmt.Sprint(t.MTU), "the tunnel MTU must be 576–9000 bytes", "use 1436, or leave it empty")
	}
	if t.TCPMSS < 536 || t.TCPMSS > t.MTU-40 {
		v.add(path+".tcp-mss", fmt.Sprint(t.TCPMSS), fmt.Sprintf("the TCP MSS must be 536 to the MTU less 40 (%d)", t.MTU-40),
			"use 1379, or leave it empty")
	}
	switch t.DPD.Action {
	case DPDClear, DPDRestart, DPDNone:
	default:
		v.add(path+".dpd.action", quote(string(t.DPD.Action)), "unknown DPD action", `use "clear", "restart" or "none"`)
	}
	if t.DPD.Delay < Duration(time.Second) {
		v.add(path+".dpd.delay", t.DPD.Delay.String(), "the DPD delay must be at least 1s", "use 10s, or leave it empty")
	}
	if t.DPD.Timeout < t.DPD.Delay {
		v.add(path+".dpd.timeout", t.DPD.Timeout.String(), "the DPD timeout must be at least the delay",
			"use 30s, or leave it empty")
	}
	switch t.NATTraversal {
	case NATTAuto, NATTForce:
	default:
		v.add(path+".nat-traversal", quote(string(t.NATTraversal)), "unknown NAT traversal mode", `use "auto" or "force"`)
	}
	if t.LocalID != "" && strings.ContainsAny(t.LocalID, "\x00\n\"") {
		v.add(path+".local-id", quote(t.LocalID), "the identity contains control characters", "use an address or a plain name")
	}
	if _, remote, ok := t.InsideAddresses(); ok && t.KeepaliveTarget.IsValid() && t.KeepaliveTarget != remote {
		in := slices.ContainsFunc(c.RemoteNetworks, func(p netip.Prefix) bool { return p.Contains(t.KeepaliveTarget) })
		if !in {
			v.add(path+".keepalive-target", t.KeepaliveTarget.String(),
				"a probe target must be the cloud's inside address or lie in the remote networks",
				"leave it empty to probe "+remote.String())
		}
	}
}

var (
	validEncryption = []Encryption{AES128, AES256, AES128GCM16, AES256GCM16}
	validIntegrity  = []Integrity{SHA1, SHA2256, SHA2384, SHA2512}
)

func validDHGroup(g int) bool { return g == 2 || g == 5 || (g >= 14 && g <= 24) }

func (v *validator) phase(path string, p Phase, minLife, maxLife time.Duration) {
	for _, e := range p.Encryption {
		if !slices.Contains(validEncryption, e) {
			v.add(path+".encryption", quote(string(e)), "unsupported encryption algorithm",
				"use aes128, aes256, aes128gcm16 or aes256gcm16")
		}
	}
	for _, a := range p.Integrity {
		if !slices.Contains(validIntegrity, a) {
			v.add(path+".integrity", quote(string(a)), "unsupported integrity algorithm",
				"use sha1, sha256, sha384 or sha512")
		}
	}
	for _, g := range p.DHGroups {
		if !validDHGroup(g) {
			v.add(path+".dh-group", fmt.Sprint(g), "unsupported Diffie-Hellman group",
				"use one of 2, 5, 14–24")
		}
	}
	if p.Lifetime < Duration(minLife) || p.Lifetime > Duration(maxLife) {
		v.add(path+".lifetime", p.Lifetime.String(),
			fmt.Sprintf("the lifetime must be %s–%s", minLife, maxLife), "use "+maxLife.String()+", or leave it empty")
	}
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "(empty)"
	}
	return a.String()
}
