package ike

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the desired IPsec state of the appliance: every site-to-site connection it keeps up. It is the
// `ipsec` section of the appliance's configuration as it is: the struct tags say how each field appears in JSON
// and in set lines (see appliance/config), so there is one description of a tunnel. The zero value has no
// connections (Set with it unloads everything). Fields left at their zero value take the cloud's defaults, which
// FillDefaults applies (Service.Set and Validate work on a copy with them filled in).
type Config struct {
	Connections map[string]*Connection `json:"connections,omitempty" key:"name" help:"A VPN connection to a cloud: two tunnels to two cloud gateways"`
}

// Connection is one cloud VPN connection: the site's networks, the cloud's networks and the two tunnels the cloud
// offers to reach them. Traffic to RemoteNetworks follows one healthy tunnel at a time (see Failover). Its name
// (the key in Config.Connections) is 1–32 characters of [a-z0-9-], starting with a letter; charon's connection
// names are derived from it ("<name>-t1", "<name>-t2").
type Connection struct {
	Description string `json:"description,omitempty" help:"Free text"`
	// LocalNetworks are the site's prefixes reachable through the tunnels (the CHILD SA's local traffic
	// selectors). On kernel-libipsec the appliance must own an address inside one of them.
	LocalNetworks []netip.Prefix `json:"local-network,omitempty" help:"Network on this side, reached through the tunnels"`
	// RemoteNetworks are the cloud's prefixes (static routing). With BGP routing they may be empty.
	RemoteNetworks []netip.Prefix `json:"remote-network,omitempty" help:"Network on the cloud side (static routing)"`
	Routing        RoutingMode    `json:"routing,omitempty" enum:"static|bgp" help:"How the remote networks are learned"`
	// BGP matters only with RoutingBGP.
	BGP BGP `json:"bgp,omitzero" help:"BGP over the tunnels (routing bgp)"`
	// StartAction says whether the appliance initiates the tunnels: the cloud never initiates, so by default the
	// appliance does.
	StartAction StartupAction `json:"start-action,omitempty" enum:"start|add" help:"start: bring the tunnels up and keep them up (the cloud never initiates); add: wait for the peer"`
	Keepalive   Keepalive     `json:"keepalive,omitzero" help:"Probe traffic through each tunnel, so the cloud never idles it out and dead tunnels are seen"`
	Failover    Failover      `json:"failover,omitzero" help:"Which tunnel carries traffic, and when it moves back"`
	// Tunnels are the cloud's tunnels, one or two (the cloud always offers two), in name order.
	Tunnels map[string]*Tunnel `json:"tunnels,omitempty" key:"name" help:"The two tunnels (tunnel1, tunnel2), in name order"`
	// Disable keeps the connection configured but unloaded.
	Disable bool `json:"disable,omitempty" help:"Keep the connection configured but down"`
}

// Tunnel is one IPsec tunnel of a connection: one IKE SA to one cloud endpoint.
type Tunnel struct {
	// LocalAddress is the appliance's outside address the IKE SA is bound to (behind NAT: the private address).
	LocalAddress netip.Addr `json:"local-address,omitzero" help:"Our outside address (behind NAT: the private one)"`
	// LocalID is the IKE identity the appliance claims; empty means LocalAddress. Behind NAT, the cloud expects
	// the customer gateway's public address here.
	LocalID string `json:"local-id,omitempty" help:"The IKE identity we claim (behind NAT: the public customer gateway address)"`
	// RemoteAddress is the cloud endpoint's outside address.
	RemoteAddress netip.Addr `json:"remote-address,omitzero" help:"The cloud gateway's outside address"`
	// PreSharedKey is 8–64 characters of [A-Za-z0-9._], not starting with '0'.
	PreSharedKey PSK `json:"pre-shared-key,omitempty" help:"IKE pre-shared key"`
	// InsideCIDR is the tunnel's /30 inside 169.254.0.0/16. The cloud takes the first host address, the
	// appliance the second (the cloud's convention).
	InsideCIDR netip.Prefix `json:"inside-cidr,omitzero" help:"Inside /30 in 169.254.0.0/16; the cloud takes the first address, we the second"`
	// IKEVersion is 1 (main mode) or 2.
	IKEVersion int `json:"ike-version,omitempty" range:"1-2" help:"IKE version (1 = main mode)"`
	// IKE is the IKE SA (phase 1) proposal; ESP the CHILD SA (phase 2) one. Empty fields take DefaultIKE's and
	// DefaultESP's.
	IKE Phase `json:"ike,omitzero" help:"Phase 1 (IKE SA) proposal and lifetime"`
	ESP Phase `json:"esp,omitzero" help:"Phase 2 (CHILD SA) proposal and lifetime"`
	// DisablePFS negotiates the CHILD SA without a Diffie-Hellman exchange (ESP.DHGroups is then unused). The
	// zero value keeps perfect forward secrecy on, as the cloud requires.
	DisablePFS bool `json:"disable-pfs,omitempty" help:"Do not use a DH exchange when rekeying the CHILD SA"`
	// RekeyMargin is how long before expiry a rekey starts.
	RekeyMargin Duration `json:"rekey-margin,omitempty" range:"1-86400" help:"Seconds before expiry to rekey"`
	// RekeyFuzz is the random share of RekeyMargin added to it, in percent; negative means none.
	RekeyFuzz int `json:"rekey-fuzz,omitempty" range:"1-1000" help:"Random extra margin, percent"`
	// ReplayWindow is the ESP anti-replay window in packets.
	ReplayWindow int `json:"replay-window,omitempty" range:"1-4096" help:"Anti-replay window in packets"`
	DPD          DPD `json:"dpd,omitzero" help:"Dead peer detection"`
	// NATTraversal says whether ESP is always UDP-encapsulated. (kernel-libipsec always encapsulates.)
	NATTraversal NATTraversal `json:"nat-traversal,omitempty" enum:"auto|force" help:"auto: UDP 4500 when a NAT is seen; force: always"`
	// KeepaliveTarget is the address this tunnel's probes go to; empty means the cloud's inside address of this
	// tunnel. A target elsewhere must lie in the connection's RemoteNetworks.
	KeepaliveTarget netip.Addr `json:"keepalive-target,omitzero" help:"Address probed through this tunnel (default: the cloud's inside address)"`
	// MTU is the tunnel interface's MTU where tunnels are route-based; the cloud's files give 1436, which leaves
	// room for ESP in UDP on a 1500-byte path.
	MTU int `json:"mtu,omitempty" range:"576-9000" help:"Tunnel interface MTU, route-based mode (the cloud's files give 1436)"`
	// TCPMSS is what the maximum segment size of TCP SYNs crossing the tunnel is clamped to, so that TCP never
	// sends segments the tunnel must fragment; the cloud's files give 1379.
	TCPMSS int `json:"tcp-mss,omitempty" range:"536-8960" help:"TCP MSS clamped on SYNs crossing the tunnel (the cloud's files give 1379)"`
	// BGP is how the BGP session over this tunnel prefers it, with routing mode bgp.
	BGP TunnelBGP `json:"bgp,omitzero" help:"BGP over this tunnel (routing mode bgp)"`
}

// TunnelBGP makes one tunnel preferred over the other in BGP, both ways: the local preference of what is learned
// over it decides where the appliance sends, the AS path prepended to what it announces over it where the cloud
// sends (the shorter path wins).
type TunnelBGP struct {
	// LocalPreference is given to every route learned over the tunnel; by default 200 on the connection's
	// preferred tunnel and 100 on the other, so traffic leaves by the preferred one as with static routing.
	LocalPreference uint32 `json:"local-preference,omitempty" range:"1-4294967295" help:"Local preference of routes learned over this tunnel (default 200 on the preferred tunnel, 100 on the other)"`
	// ASPathPrepend is how many extra times our ASN is put in front of what is announced over the tunnel (0–10).
	ASPathPrepend int `json:"as-path-prepend,omitempty" range:"0-10" help:"Extra copies of our ASN on what we announce over this tunnel, so the cloud prefers the other"`
}

// Phase is one negotiation phase's proposal: every combination of the listed algorithms is offered, in order of
// preference.
type Phase struct {
	Encryption []Encryption `json:"encryption,omitempty" enum:"aes128|aes256|aes128gcm16|aes256gcm16" help:"Cipher"`
	Integrity  []Integrity  `json:"integrity,omitempty" enum:"sha1|sha256|sha384|sha512" help:"Integrity algorithm"`
	DHGroups   []int        `json:"dh-group,omitempty" range:"2-24" help:"Diffie-Hellman group (2, 5, 14-24)"`
	Lifetime   Duration     `json:"lifetime,omitempty" range:"60-86400" help:"Lifetime in seconds (IKE 28800, ESP 3600)"`
}

// PSK is a pre-shared key. It is secret by its type: fmt (every verb) and slog print "****", so a key never
// reaches an error, a status or a log line by mistake; string(k) is the key itself.
type PSK string

// Format prints "****" whatever the verb.
func (PSK) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "****") }

// LogValue makes slog print "****".
func (PSK) LogValue() slog.Value { return slog.StringValue("****") }

// Duration is a time.Duration that the configuration writes in seconds, in set lines and in JSON: whole seconds
// as an integer ("30"), and fractions to the millisecond as a decimal ("0.25"), for the keepalive probes.
type Duration time.Duration

// Seconds returns n seconds.
func Seconds(n int) Duration { return Duration(time.Duration(n) * time.Second) }

// MarshalText writes seconds, with up to three decimals.
func (d Duration) MarshalText() ([]byte, error) {
	ms := time.Duration(d).Round(time.Millisecond).Milliseconds()
	if ms%1000 == 0 {
		return strconv.AppendInt(nil, ms/1000, 10), nil
	}
	return strconv.AppendFloat(nil, float64(ms)/1000, 'f', -1, 64), nil
}

// UnmarshalText reads seconds, with up to three decimals.
func (d *Duration) UnmarshalText(b []byte) error {
	whole, frac, dotted := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(whole, 10, 32)
	ms := int64(0)
	if err == nil && dotted {
		if len(frac) == 0 || len(frac) > 3 || strings.HasPrefix(whole, "-") {
			err = strconv.ErrSyntax
		} else {
			ms, err = strconv.ParseInt((frac + "00")[:3], 10, 32)
		}
	}
	if err != nil || ms < 0 {
		return fmt.Errorf("%q is not a number of seconds (e.g. 30, or 0.25: at most three decimals)", b)
	}
	*d = Duration(time.Duration(n)*time.Second + time.Duration(ms)*time.Millisecond)
	return nil
}

// MarshalJSON writes seconds as a JSON number.
func (d Duration) MarshalJSON() ([]byte, error) { return d.MarshalText() }

// UnmarshalJSON reads a JSON number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	return d.UnmarshalText([]byte(n))
}

func (d Duration) String() string { return time.Duration(d).String() }

// Encryption is an encryption algorithm, named as strongSwan names it.
type Encryption string

// The encryption algorithms the cloud accepts.
const (
	AES128      Encryption = "aes128"
	AES256      Encryption = "aes256"
	AES128GCM16 Encryption = "aes128gcm16"
	AES256GCM16 Encryption = "aes256gcm16"
)

// AEAD reports whether e is an AEAD cipher (AES-GCM), which carries its own integrity.
func (e Encryption) AEAD() bool { return e == AES128GCM16 || e == AES256GCM16 }

// Integrity is an integrity (and, for IKE, PRF) algorithm, named as strongSwan names it.
type Integrity string

// The integrity algorithms the cloud accepts.
const (
	SHA1    Integrity = "sha1"
	SHA2256 Integrity = "sha256"
	SHA2384 Integrity = "sha384"
	SHA2512 Integrity = "sha512"
)

// DPD is dead peer detection. Timeout matters with IKEv1 only: IKEv2 declares a peer dead after charon's
// retransmissions, see charon.Retransmit.
type DPD struct {
	Delay   Duration  `json:"delay,omitempty" range:"1-3600" help:"Seconds of silence before a liveness check"`
	Timeout Duration  `json:"timeout,omitempty" range:"1-3600" help:"Seconds without answer before the peer is dead (IKEv1)"`
	Action  DPDAction `json:"action,omitempty" enum:"clear|restart|none" help:"What to do with a dead peer"`
}

// DPDAction is what charon does when the peer is found dead.
type DPDAction string

// The DPD actions.
const (
	DPDClear   DPDAction = "clear"   // close the SAs and wait (the engine still re-initiates if StartupStart)
	DPDRestart DPDAction = "restart" // re-initiate at once (the default)
	DPDNone    DPDAction = "none"    // no DPD at all
)

// NATTraversal selects UDP encapsulation of ESP.
type NATTraversal string

// The NAT traversal modes.
const (
	NATTAuto  NATTraversal = "auto"  // encapsulate when a NAT is detected (the default)
	NATTForce NATTraversal = "force" // always encapsulate (UDP 4500)
)

// StartupAction says who brings a tunnel up.
type StartupAction string

// The startup actions.
const (
	StartupStart StartupAction = "start" // the appliance initiates and keeps the tunnels up (default)
	StartupAdd   StartupAction = "add"   // load only and wait for the peer to initiate
)

// RoutingMode is how the cloud's prefixes are learnt.
type RoutingMode string

// The routing modes.
const (
	RoutingStatic RoutingMode = "static" // RemoteNetworks are configured (default)
	RoutingBGP    RoutingMode = "bgp"    // learnt over BGP between the inside addresses (BGP itself is elsewhere)
)

// BGP is the BGP side of a connection using dynamic routing.
type BGP struct {
	LocalASN  uint32   `json:"local-asn,omitempty" help:"Our autonomous system number (the customer gateway ASN)"`
	RemoteASN uint32   `json:"remote-asn,omitempty" help:"The cloud's autonomous system number"`
	HoldTime  Duration `json:"hold-time,omitempty" range:"3-65535" help:"BGP hold time in seconds"`
	// Password, if set, signs both tunnels' BGP sessions (TCP MD5); the cloud's side must have the same.
	Password PSK `json:"password,omitempty" help:"TCP MD5 key of the BGP sessions (1-80 characters)"`
}

// Keepalive is the SLA monitor of a connection's tunnels: ICMP probes through each of them. By default it probes
// every 0.2 s, waits up to 1 s for each answer (requests overlap: a slow path is not a dead one) and declares a
// tunnel's data path dead after 3 consecutive losses: a dead gateway is noticed within 1.6 s, and traffic moves
// to the other tunnel, for about 0.5 KB/s of probes each way per tunnel.
type Keepalive struct {
	Interval  Duration `json:"interval,omitempty" help:"Seconds between probes, e.g. 0.2 (0.1 to 300)"`
	Timeout   Duration `json:"timeout,omitempty" help:"Seconds to wait for each answer, e.g. 1 (0.1 to 60)"`
	DownAfter int      `json:"down-after,omitempty" range:"1-100" help:"Lost probes in a row before the tunnel counts as down"`
	Disable   bool     `json:"disable,omitempty" help:"Send no probes (the cloud then closes idle tunnels)"`
}

// Failover says which tunnel carries traffic.
type Failover struct {
	// Preferred names the tunnel that carries traffic when both are healthy; by default the first in name order.
	Preferred string `json:"preferred,omitempty" help:"The tunnel that carries traffic when both are healthy (default: the first)"`
	// HoldDown is how long the preferred tunnel must stay healthy before traffic moves back to it.
	HoldDown Duration `json:"hold-down,omitempty" range:"1-3600" help:"Seconds the preferred tunnel must stay healthy before traffic moves back"`
}

// The cloud's defaults.
const (
	DefaultIKELifetime    = 28800 * time.Second
	DefaultESPLifetime    = 3600 * time.Second
	DefaultRekeyMargin    = 540 * time.Second
	DefaultRekeyFuzz      = 100
	DefaultReplayWindow   = 1024
	DefaultTunnelMTU      = 1436
	DefaultTCPMSS         = 1379
	DefaultDPDDelay       = 10 * time.Second
	DefaultDPDTimeout     = 30 * time.Second
	DefaultProbeInterval  = 200 * time.Millisecond
	DefaultProbeTimeout   = time.Second
	DefaultProbeDownAfter = 3
	DefaultHoldDown       = 30 * time.Second
	DefaultBGPHoldTime    = 30 * time.Second
	// The local preferences of routes learned over the preferred tunnel and over the other.
	DefaultPreferredLocalPreference = 200
	DefaultLocalPreference          = 100
	DefaultRemoteASN                = 64512
)

// DefaultIKE returns the phase 1 proposal used for fields left empty: the cloud's common set, strongest first.
func DefaultIKE() Phase {
	return Phase{
		Encryption: []Encryption{AES256, AES128},
		Integrity:  []Integrity{SHA2256, SHA1},
		DHGroups:   []int{14, 2},
		Lifetime:   Duration(DefaultIKELifetime),
	}
}

// DefaultESP returns the phase 2 proposal used for fields left empty.
func DefaultESP() Phase {
	p := DefaultIKE()
	p.Lifetime = Duration(DefaultESPLifetime)
	return p
}

// FillDefaults sets every field left at its zero value that has a default, in every connection. It is the one
// place the defaults are; the appliance's configuration calls it for its effective configuration.
func (c *Config) FillDefaults() {
	for _, conn := range c.Connections {
		if conn != nil {
			conn.FillDefaults()
		}
	}
}

// FillDefaults sets the connection's unset fields that have a default, its tunnels' included.
func (c *Connection) FillDefaults() {
	c.Routing = cmp.Or(c.Routing, RoutingStatic)
	c.StartAction = cmp.Or(c.StartAction, StartupStart)
	c.BGP.FillDefaults()
	c.Keepalive.FillDefaults()
	c.Failover.FillDefaults()
	if c.Failover.Preferred == "" && len(c.Tunnels) > 0 {
		c.Failover.Preferred = slices.Sorted(maps.Keys(c.Tunnels))[0]
	}
	for name, t := range c.Tunnels {
		if t == nil {
			continue
		}
		t.FillDefaults()
		if c.Routing == RoutingBGP && t.BGP.LocalPreference == 0 {
			t.BGP.LocalPreference = DefaultLocalPreference
			if name == c.Failover.Preferred {
				t.BGP.LocalPreference = DefaultPreferredLocalPreference
			}
		}
	}
}

// FillDefaults sets the unset BGP fields that have a default.
func (b *BGP) FillDefaults() {
	b.RemoteASN = cmp.Or(b.RemoteASN, DefaultRemoteASN)
	b.HoldTime = cmp.Or(b.HoldTime, Duration(DefaultBGPHoldTime))
}

// FillDefaults sets the unset keepalive fields.
func (k *Keepalive) FillDefaults() {
	k.Interval = cmp.Or(k.Interval, Duration(DefaultProbeInterval))
	k.Timeout = cmp.Or(k.Timeout, Duration(DefaultProbeTimeout))
	k.DownAfter = cmp.Or(k.DownAfter, DefaultProbeDownAfter)
}

// FillDefaults sets the hold-down when unset. The preferred tunnel's default depends on the connection's tunnels:
// Connection.FillDefaults sets it.
func (f *Failover) FillDefaults() {
	f.HoldDown = cmp.Or(f.HoldDown, Duration(DefaultHoldDown))
}

// FillDefaults sets the unset DPD fields.
func (d *DPD) FillDefaults() {
	d.Delay = cmp.Or(d.Delay, Duration(DefaultDPDDelay))
	d.Timeout = cmp.Or(d.Timeout, Duration(DefaultDPDTimeout))
	d.Action = cmp.Or(d.Action, DPDRestart)
}

// FillDefaults sets the tunnel's unset fields that have a default: the proposals, the timers, and the probe
// target (the cloud's inside address).
func (t *Tunnel) FillDefaults() {
	t.IKEVersion = cmp.Or(t.IKEVersion, 2)
	t.IKE.fill(DefaultIKE())
	t.ESP.fill(DefaultESP())
	t.RekeyMargin = cmp.Or(t.RekeyMargin, Duration(DefaultRekeyMargin))
	t.RekeyFuzz = cmp.Or(t.RekeyFuzz, DefaultRekeyFuzz)
	t.ReplayWindow = cmp.Or(t.ReplayWindow, DefaultReplayWindow)
	t.MTU = cmp.Or(t.MTU, DefaultTunnelMTU)
	t.TCPMSS = cmp.Or(t.TCPMSS, DefaultTCPMSS)
	t.DPD.FillDefaults()
	t.NATTraversal = cmp.Or(t.NATTraversal, NATTAuto)
	if t.LocalID == "" && t.LocalAddress.IsValid() {
		t.LocalID = t.LocalAddress.String()
	}
	if !t.KeepaliveTarget.IsValid() {
		if _, remote, ok := t.InsideAddresses(); ok {
			t.KeepaliveTarget = remote
		}
	}
}

func (p *Phase) fill(d Phase) {
	if len(p.Encryption) == 0 {
		p.Encryption = d.Encryption
	}
	if len(p.Integrity) == 0 {
		p.Integrity = d.Integrity
	}
	if len(p.DHGroups) == 0 {
		p.DHGroups = d.DHGroups
	}
	p.Lifetime = cmp.Or(p.Lifetime, d.Lifetime)
}

// Clone returns a deep copy of c.
func (c Config) Clone() Config {
	out := Config{}
	if c.Connections != nil {
		out.Connections = make(map[string]*Connection, len(c.Connections))
	}
	for name, conn := range c.Connections {
		if conn == nil {
			out.Connections[name] = nil
			continue
		}
		cc := *conn
		cc.LocalNetworks = slices.Clone(conn.LocalNetworks)
		cc.RemoteNetworks = slices.Clone(conn.RemoteNetworks)
		if conn.Tunnels != nil {
			cc.Tunnels = make(map[string]*Tunnel, len(conn.Tunnels))
		}
		for tn, t := range conn.Tunnels {
			if t == nil {
				cc.Tunnels[tn] = nil
				continue
			}
			ct := *t
			for _, p := range []*Phase{&ct.IKE, &ct.ESP} {
				p.Encryption = slices.Clone(p.Encryption)
				p.Integrity = slices.Clone(p.Integrity)
				p.DHGroups = slices.Clone(p.DHGroups)
			}
			cc.Tunnels[tn] = &ct
		}
		out.Connections[name] = &cc
	}
	return out
}

// Normalize returns a deep copy of c with every default filled in. Validate and Set work on normalized copies.
func (c Config) Normalize() Config {
	out := c.Clone()
	out.FillDefaults()
	return out
}

// ConnectionNames returns the names of the connections that are not disabled, in order: the order in which the
// engine loads them and reports their status.
func (c Config) ConnectionNames() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(c.Connections)) {
		if conn := c.Connections[name]; conn != nil && !conn.Disable {
			out = append(out, name)
		}
	}
	return out
}

// TunnelNames returns the connection's tunnel names in order: tunnel i of its status is TunnelNames()[i].
func (c *Connection) TunnelNames() []string { return slices.Sorted(maps.Keys(c.Tunnels)) }

// InsideAddresses returns the appliance's and the cloud's inside addresses of the tunnel: the second and the
// first host of InsideCIDR. ok is false if InsideCIDR is not an IPv4 /30.
func (t Tunnel) InsideAddresses() (local, remote netip.Addr, ok bool) {
	p := t.InsideCIDR
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() != 30 {
		return netip.Addr{}, netip.Addr{}, false
	}
	base := p.Masked().Addr()
	remote = base.Next()
	local = remote.Next()
	return local, remote, true
}

// TunnelName returns charon's name for tunnel i (0-based, in name order) of connection conn: "<conn>-t1" or
// "<conn>-t2".
func TunnelName(conn string, i int) string {
	return conn + "-t" + string(rune('1'+i))
}
