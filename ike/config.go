package ike

import (
	"net/netip"
	"time"
)

// Config is the desired IPsec state of the appliance: every site-to-site connection it keeps up. It is a plain
// value; the zero value has no connections (Set with it unloads everything). Fields left at their zero value take
// the documented defaults (the cloud's defaults), applied by Service.Set and by Normalize.
type Config struct {
	Connections []Connection
}

// Connection is one cloud VPN connection: the site's networks, the cloud's networks and the two tunnels the cloud
// offers to reach them. Traffic to RemoteNetworks follows one healthy tunnel at a time (see Failover).
type Connection struct {
	// Name identifies the connection: 1–32 characters of [a-z0-9-], starting with a letter. charon's connection
	// names are derived from it ("<name>-t1", "<name>-t2").
	Name string
	// LocalNetworks are the site's prefixes reachable through the tunnels (the CHILD SA's local traffic
	// selectors). On kernel-libipsec the appliance must own an address inside one of them.
	LocalNetworks []netip.Prefix
	// RemoteNetworks are the cloud's prefixes (static routing). With BGP routing they may be empty.
	RemoteNetworks []netip.Prefix
	// Tunnels are the cloud's tunnels, one or two (the cloud always offers two).
	Tunnels []Tunnel
	// Routing says how the cloud's prefixes are learnt.
	Routing Routing
	// StartupAction says whether the appliance initiates the tunnels. The zero value is StartupStart: the cloud
	// never initiates, so the appliance must.
	StartupAction StartupAction
	// Keepalive is the SLA monitor: ICMP probes through each tunnel.
	Keepalive Keepalive
	// Failover tunes how traffic moves between the tunnels.
	Failover Failover
}

// Tunnel is one IPsec tunnel of a connection: one IKE SA to one cloud endpoint.
type Tunnel struct {
	// LocalAddress is the appliance's outside address the IKE SA is bound to (behind NAT: the private address).
	LocalAddress netip.Addr
	// RemoteAddress is the cloud endpoint's outside address.
	RemoteAddress netip.Addr
	// LocalID is the IKE identity the appliance claims; empty means LocalAddress. Behind NAT, the cloud expects
	// the customer gateway's public address here.
	LocalID string
	// PSK is the pre-shared key: 8–64 characters of [A-Za-z0-9._], not starting with '0'. It never appears in
	// errors, status or logs.
	PSK string
	// InsideCIDR is the tunnel's /30 inside 169.254.0.0/16. The cloud takes the first host address, the
	// appliance the second (the cloud's convention).
	InsideCIDR netip.Prefix
	// IKEVersion is 1 (main mode) or 2; 0 means 2.
	IKEVersion int
	// Phase1 is the IKE SA proposal; zero fields take DefaultPhase1.
	Phase1 Phase
	// Phase2 is the CHILD SA (ESP) proposal; zero fields take DefaultPhase2.
	Phase2 Phase
	// DisablePFS negotiates the CHILD SA without a Diffie-Hellman exchange (Phase2.DHGroups is then unused).
	// The zero value keeps perfect forward secrecy on, as the cloud requires.
	DisablePFS bool
	// RekeyMargin is how long before expiry a rekey starts; 0 means 540 s (the cloud's default).
	RekeyMargin time.Duration
	// RekeyFuzz is the random share of RekeyMargin added to it, in percent; 0 means 100, negative means none.
	RekeyFuzz int
	// ReplayWindow is the ESP anti-replay window in packets; 0 means 1024.
	ReplayWindow int
	// DPD configures dead peer detection.
	DPD DPD
	// NATTraversal says whether ESP is always UDP-encapsulated. (kernel-libipsec always encapsulates.)
	NATTraversal NATTraversal
	// KeepaliveTarget is the address this tunnel's probes go to; the zero value means the cloud's inside
	// address of this tunnel. A target elsewhere must lie in RemoteNetworks.
	KeepaliveTarget netip.Addr
}

// Phase is one negotiation phase's proposal: every combination of the listed algorithms is offered, in order of
// preference. Lifetime 0 means the phase's default (28800 s for phase 1, 3600 s for phase 2).
type Phase struct {
	Encryption []Encryption
	Integrity  []Integrity
	DHGroups   []int
	Lifetime   time.Duration
}

// Encryption is an encryption algorithm as the cloud names it.
type Encryption string

// The encryption algorithms the cloud accepts.
const (
	AES128      Encryption = "AES128"
	AES256      Encryption = "AES256"
	AES128GCM16 Encryption = "AES128-GCM-16"
	AES256GCM16 Encryption = "AES256-GCM-16"
)

// Integrity is an integrity (and, for IKE, PRF) algorithm as the cloud names it.
type Integrity string

// The integrity algorithms the cloud accepts.
const (
	SHA1    Integrity = "SHA1"
	SHA2256 Integrity = "SHA2-256"
	SHA2384 Integrity = "SHA2-384"
	SHA2512 Integrity = "SHA2-512"
)

// DPD is dead peer detection. Delay 0 means 10 s; Timeout 0 means 30 s (IKEv1 only: IKEv2 declares a peer dead
// after charon's retransmissions, see charon.Retransmit); Action "" means DPDRestart.
type DPD struct {
	Delay   time.Duration
	Timeout time.Duration
	Action  DPDAction
}

// DPDAction is what charon does when the peer is found dead.
type DPDAction string

// The DPD actions.
const (
	DPDClear   DPDAction = "clear"   // close the SAs and wait (the engine still re-initiates if StartupStart)
	DPDRestart DPDAction = "restart" // re-initiate at once
	DPDNone    DPDAction = "none"    // no DPD at all
)

// NATTraversal selects UDP encapsulation of ESP.
type NATTraversal string

// The NAT traversal modes.
const (
	NATTAuto  NATTraversal = ""      // encapsulate when a NAT is detected (the default)
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

// Routing is a connection's routing. The ASNs matter only with RoutingBGP.
type Routing struct {
	Mode      RoutingMode
	LocalASN  uint32
	RemoteASN uint32
	// HoldTime is the BGP hold time; 0 means 30 s.
	HoldTime time.Duration
}

// Keepalive configures the per-tunnel SLA monitor. The zero value probes every 5 s, waits 2 s for each answer and
// declares a tunnel's data path dead after 3 consecutive losses.
type Keepalive struct {
	Disabled  bool
	Interval  time.Duration // 0 means 5 s
	Timeout   time.Duration // 0 means 2 s (at most Interval)
	DownAfter int           // consecutive losses before the tunnel is down; 0 means 3
}

// Failover configures how traffic moves between a connection's tunnels.
type Failover struct {
	// Preferred is the index (0 or 1) of the tunnel that carries traffic when both are healthy.
	Preferred int
	// HoldDown is how long the preferred tunnel must stay healthy before traffic moves back to it; 0 means 30 s.
	HoldDown time.Duration
}

// The cloud's defaults.
const (
	DefaultPhase1Lifetime = 28800 * time.Second
	DefaultPhase2Lifetime = 3600 * time.Second
	DefaultRekeyMargin    = 540 * time.Second
	DefaultRekeyFuzz      = 100
	DefaultReplayWindow   = 1024
	DefaultDPDDelay       = 10 * time.Second
	DefaultDPDTimeout     = 30 * time.Second
	DefaultProbeInterval  = 5 * time.Second
	DefaultProbeTimeout   = 2 * time.Second
	DefaultProbeDownAfter = 3
	DefaultHoldDown       = 30 * time.Second
	DefaultBGPHoldTime    = 30 * time.Second
)

// DefaultPhase1 returns the phase 1 proposal used for fields left empty: the cloud's common set, strongest first.
func DefaultPhase1() Phase {
	return Phase{
		Encryption: []Encryption{AES256, AES128},
		Integrity:  []Integrity{SHA2256, SHA1},
		DHGroups:   []int{14, 2},
		Lifetime:   DefaultPhase1Lifetime,
	}
}

// DefaultPhase2 returns the phase 2 proposal used for fields left empty.
func DefaultPhase2() Phase {
	p := DefaultPhase1()
	p.Lifetime = DefaultPhase2Lifetime
	return p
}

// Normalize returns a copy of c with every default applied. Validate and Set work on normalized copies; the
// appliance may call it to show the effective configuration.
func (c Config) Normalize() Config {
	out := Config{Connections: make([]Connection, len(c.Connections))}
	for i, conn := range c.Connections {
		out.Connections[i] = conn.normalize()
	}
	return out
}

func (c Connection) normalize() Connection {
	c.LocalNetworks = append([]netip.Prefix(nil), c.LocalNetworks...)
	c.RemoteNetworks = append([]netip.Prefix(nil), c.RemoteNetworks...)
	tunnels := make([]Tunnel, len(c.Tunnels))
	for i, t := range c.Tunnels {
		tunnels[i] = t.normalize()
	}
	c.Tunnels = tunnels
	if c.Routing.Mode == "" {
		c.Routing.Mode = RoutingStatic
	}
	if c.Routing.HoldTime == 0 {
		c.Routing.HoldTime = DefaultBGPHoldTime
	}
	if c.StartupAction == "" {
		c.StartupAction = StartupStart
	}
	if c.Keepalive.Interval == 0 {
		c.Keepalive.Interval = DefaultProbeInterval
	}
	if c.Keepalive.Timeout == 0 {
		c.Keepalive.Timeout = min(DefaultProbeTimeout, c.Keepalive.Interval)
	}
	if c.Keepalive.DownAfter == 0 {
		c.Keepalive.DownAfter = DefaultProbeDownAfter
	}
	if c.Failover.HoldDown == 0 {
		c.Failover.HoldDown = DefaultHoldDown
	}
	return c
}

func (t Tunnel) normalize() Tunnel {
	if t.IKEVersion == 0 {
		t.IKEVersion = 2
	}
	t.Phase1 = t.Phase1.withDefaults(DefaultPhase1())
	t.Phase2 = t.Phase2.withDefaults(DefaultPhase2())
	if t.RekeyMargin == 0 {
		t.RekeyMargin = DefaultRekeyMargin
	}
	if t.RekeyFuzz == 0 {
		t.RekeyFuzz = DefaultRekeyFuzz
	}
	if t.ReplayWindow == 0 {
		t.ReplayWindow = DefaultReplayWindow
	}
	if t.DPD.Delay == 0 {
		t.DPD.Delay = DefaultDPDDelay
	}
	if t.DPD.Timeout == 0 {
		t.DPD.Timeout = DefaultDPDTimeout
	}
	if t.DPD.Action == "" {
		t.DPD.Action = DPDRestart
	}
	if t.LocalID == "" && t.LocalAddress.IsValid() {
		t.LocalID = t.LocalAddress.String()
	}
	if !t.KeepaliveTarget.IsValid() {
		if _, remote, ok := t.InsideAddresses(); ok {
			t.KeepaliveTarget = remote
		}
	}
	return t
}

func (p Phase) withDefaults(d Phase) Phase {
	if len(p.Encryption) == 0 {
		p.Encryption = d.Encryption
	}
	if len(p.Integrity) == 0 {
		p.Integrity = d.Integrity
	}
	if len(p.DHGroups) == 0 {
		p.DHGroups = d.DHGroups
	}
	if p.Lifetime == 0 {
		p.Lifetime = d.Lifetime
	}
	p.Encryption = append([]Encryption(nil), p.Encryption...)
	p.Integrity = append([]Integrity(nil), p.Integrity...)
	p.DHGroups = append([]int(nil), p.DHGroups...)
	return p
}

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

// TunnelName returns charon's name for tunnel i (0-based) of connection conn: "<conn>-t1" or "<conn>-t2".
func TunnelName(conn string, i int) string {
	return conn + "-t" + string(rune('1'+i))
}
