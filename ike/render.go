package ike

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"toride/dataplane/xfrm"
	"toride/ike/charon"
	"toride/ike/internal/vici"
)

// tunnelPlan is one tunnel rendered for charon: what to load, and what the engine needs to drive it.
type tunnelPlan struct {
	conn    string // connection name
	index   int    // tunnel index in the connection
	name    string // charon connection name, "<conn>-t1"
	ikeConn vici.Conn
	secret  vici.Shared

	probeChild string // CHILD_SA carrying the keepalive probes (inside /32 ↔ inside /32); = netChild on IKEv2
	netChild   string // CHILD_SA carrying LAN traffic; "" when there are no remote networks (BGP)

	// link is the tunnel's xfrm interface in route-based mode (the zero Interface otherwise): its if_id binds
	// the net CHILD_SA to it, its address is the tunnel's inside address.
	link xfrm.Interface
	mss  int       // the TCP MSS clamped on SYNs leaving by link
	bgp  TunnelBGP // how the tunnel's BGP session prefers it

	localInside  netip.Addr
	remoteInside netip.Addr
	probeTarget  netip.Addr
	start        bool // StartupStart: the engine initiates and keeps it up

	hash [32]byte // of everything loaded into charon, to detect changes
}

// connPlan is one connection rendered for charon.
type connPlan struct {
	name      string
	tunnels   []*tunnelPlan
	remote    []netip.Prefix // the remote networks, routed into the carrier's link in route-based mode
	local     []netip.Prefix // the local networks, announced over BGP
	bgp       *BGP           // routing mode bgp; nil for static
	keepalive probePlan
	failover  failoverPlan
}

// probePlan is how a connection's tunnels are probed (see Keepalive).
type probePlan struct {
	Disabled          bool
	Interval, Timeout time.Duration
	DownAfter         int
}

// failoverPlan is how traffic moves between a connection's tunnels (see Failover): Preferred is the index of the
// preferred tunnel.
type failoverPlan struct {
	Preferred int
	HoldDown  time.Duration
}

// plan renders a normalized, validated Config for charon on the given backend in the given mode: the enabled
// connections in name order, each with its tunnels in name order.
func plan(c Config, backend charon.Backend, mode Mode) []*connPlan {
	var out []*connPlan
	ifIDs := ifIDs{}
	for _, name := range c.ConnectionNames() {
		conn := c.Connections[name]
		ka := conn.Keepalive
		cp := &connPlan{name: name, remote: conn.RemoteNetworks, local: conn.LocalNetworks,
			keepalive: probePlan{Disabled: ka.Disable, Interval: time.Duration(ka.Interval), Timeout: time.Duration(ka.Timeout),
				DownAfter: ka.DownAfter},
			failover: failoverPlan{HoldDown: time.Duration(conn.Failover.HoldDown)},
		}
		for i, tn := range conn.TunnelNames() {
			if conn.Routing == RoutingBGP {
				b := conn.BGP
				cp.bgp = &b
			}
			if tn == conn.Failover.Preferred {
				cp.failover.Preferred = i
			}
			tp := planTunnel(name, conn, i, conn.Tunnels[tn], backend, mode, ifIDs)
			cp.tunnels = append(cp.tunnels, tp)
		}
		out = append(out, cp)
	}
	return out
}

func planTunnel(connName string, conn *Connection, i int, t *Tunnel, backend charon.Backend, mode Mode, ids ifIDs) *tunnelPlan {
	name := TunnelName(connName, i)
	localIn, remoteIn, _ := t.InsideAddresses()
	p := &tunnelPlan{
		conn:         connName,
		index:        i,
		name:         name,
		probeChild:   name + "-probe",
		localInside:  localIn,
		remoteInside: remoteIn,
		probeTarget:  t.KeepaliveTarget,
		bgp:          t.BGP,
		start:        conn.StartAction == StartupStart,
	}
	ikeLife := time.Duration(t.IKE.Lifetime)
	childLife := time.Duration(t.ESP.Lifetime)
	margin := time.Duration(t.RekeyMargin)
	fuzz := time.Duration(max(t.RekeyFuzz, 0)) * margin / 100

	children := map[string]vici.Child{}
	child := func(local, remote []string) vici.Child {
		ch := vici.Child{
			LocalTS:      local,
			RemoteTS:     remote,
			ESPProposals: espProposals(t),
			RekeyTime:    secs(childLife - margin),
			LifeTime:     secs(childLife),
			RandTime:     secs(fuzz),
			ReplayWindow: t.ReplayWindow,
			DPDAction:    string(t.DPD.Action),
			// The engine initiates and re-initiates; charon must not act on its own at load time.
			StartAction: "none",
			CloseAction: "none",
			Mode:        "tunnel",
		}
		return ch
	}
	probeLocal := []string{hostPrefix(localIn)}
	probeRemote := []string{hostPrefix(remoteIn)}
	if t.KeepaliveTarget.IsValid() && t.KeepaliveTarget != remoteIn {
		probeRemote = append(probeRemote, hostPrefix(t.KeepaliveTarget))
	}
	markUnique := func(ch *vici.Child) {
		if backend == charon.BackendLibipsec {
			// A unique mark per CHILD_SA instance gives each instance its own reqid, hence its own entries in
			// libipsec's policy list, where the newest instance with equal selectors carries the traffic. This
			// is what lets the engine steer traffic between two tunnels with identical selectors (see
			// failover.go). libipsec ignores the mark values themselves.
			ch.MarkIn, ch.MarkOut = "%unique", "%unique"
		}
	}
	// The remote networks the policy-based CHILD_SAs select. What BGP will learn is unknown when they are
	// negotiated: on kernel-libipsec they select everything, as the cloud's do, and the gate (gate.go) decides
	// what is routed into them. Elsewhere (kernel ESP without xfrm interfaces) BGP does not run.
	remoteNets := prefixStrings(conn.RemoteNetworks)
	dynamic := conn.Routing == RoutingBGP && backend == charon.BackendLibipsec
	if dynamic {
		remoteNets = []string{"0.0.0.0/0"}
	}
	switch {
	case mode == ModeRouteBased:
		// One CHILD_SA of 0.0.0.0/0 both ways, bound to the tunnel's xfrm interface by its if_id: the routing
		// table, not the selectors, decides what enters the tunnel. Probes and LAN traffic share the one SA pair
		// the cloud expects, with IKEv1 as with IKEv2, and either tunnel accepts whatever the cloud sends.
		id := ids.take(name)
		p.link = xfrm.Interface{Name: linkName(name, id), IfID: id, MTU: t.MTU,
			Address: netip.PrefixFrom(localIn, t.InsideCIDR.Bits())}
		p.mss = t.TCPMSS
		p.netChild = name + "-net"
		p.probeChild = p.netChild
		net := child([]string{"0.0.0.0/0"}, []string{"0.0.0.0/0"})
		net.IfIDIn, net.IfIDOut = fmt.Sprint(id), fmt.Sprint(id)
		children[p.netChild] = net
	case len(remoteNets) == 0 || len(conn.LocalNetworks) == 0:
		// Nothing but the probes (and BGP where it cannot run: see remoteNets).
		children[p.probeChild] = child(probeLocal, probeRemote)
	case t.IKEVersion == 2:
		// One CHILD_SA carries both the LAN traffic and the probes, as the cloud expects (one SA pair per
		// tunnel); the probes' inside /32 selectors are unique to the tunnel, so they always use it, and they
		// keep the very SA the LAN traffic needs from idling out.
		p.netChild = name + "-net"
		p.probeChild = p.netChild
		remote := remoteNets
		if !dynamic {
			remote = append(slices.Clone(remoteNets), probeRemote...)
		}
		net := child(append(prefixStrings(conn.LocalNetworks), probeLocal...), remote)
		markUnique(&net)
		children[p.netChild] = net
	default:
		// IKEv1 negotiates one selector pair per SA: the probes need a CHILD_SA of their own.
		children[p.probeChild] = child(probeLocal, probeRemote)
		p.netChild = name + "-net"
		net := child(prefixStrings(conn.LocalNetworks), remoteNets)
		markUnique(&net)
		children[p.netChild] = net
	}

	ic := vici.Conn{
		Version:     fmt.Sprint(t.IKEVersion),
		LocalAddrs:  []string{t.LocalAddress.String()},
		RemoteAddrs: []string{t.RemoteAddress.String()},
		Proposals:   ikeProposals(t),
		Encap:       t.NATTraversal == NATTForce,
		DPDDelay:    secs(time.Duration(t.DPD.Delay)),
		OverTime:    secs(margin),
		RandTime:    secs(fuzz),
		Keyingtries: 0, // retry forever: the cloud never initiates
		Local:       vici.AuthRound{Auth: "psk", ID: t.LocalID},
		Remote:      vici.AuthRound{Auth: "psk", ID: t.RemoteAddress.String()},
		Children:    children,
	}
	if t.DPD.Action == DPDNone {
		ic.DPDDelay = "0s"
	}
	if t.IKEVersion == 1 {
		// IKEv1 cannot rekey an IKE SA: it re-authenticates.
		ic.DPDTimeout = secs(time.Duration(t.DPD.Timeout))
		ic.ReauthTime = secs(ikeLife - margin)
		ic.RekeyTime = "0s"
	} else {
		ic.RekeyTime = secs(ikeLife - margin)
	}
	p.ikeConn = ic
	p.secret = vici.Shared{
		ID:     "toride-" + name,
		Type:   "IKE",
		Data:   string(t.PreSharedKey),
		Owners: []string{t.LocalID, t.RemoteAddress.String()},
	}
	// The link is not part of the hash: it is reconciled on its own (xfrm.Tunnels.Set), and an MTU change must
	// not re-establish the tunnel. Its if_id is, through the children.
	p.hash = hashOf(struct {
		Conn   vici.Conn
		Secret vici.Shared
	}{ic, p.secret})
	return p
}

func hashOf(v any) [32]byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("ike: hash of plan: " + err.Error()) // only plain data is hashed: a wiring bug
	}
	return sha256.Sum256(b)
}

func secs(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Masked().String()
	}
	return out
}

var (
	dhNames = map[int]string{
		2: "modp1024", 5: "modp1536", 14: "modp2048", 15: "modp3072", 16: "modp4096", 17: "modp6144",
		18: "modp8192", 19: "ecp256", 20: "ecp384", 21: "ecp521", 22: "modp1024s160", 23: "modp2048s224",
		24: "modp2048s256",
	}
)

// splitEncryption separates AEAD from classic ciphers: strongSwan proposals cannot mix them.
func splitEncryption(es []Encryption) (classic, aead []string) {
	for _, e := range es {
		if e.AEAD() {
			aead = append(aead, string(e))
		} else {
			classic = append(classic, string(e))
		}
	}
	return classic, aead
}

func dhList(groups []int) []string {
	var out []string
	for _, g := range groups {
		out = append(out, dhNames[g])
	}
	return out
}

// ikeProposals renders phase 1 as at most two strongSwan proposals (classic and AEAD), each listing every
// algorithm so that all combinations are offered.
func ikeProposals(t *Tunnel) []string {
	classic, aead := splitEncryption(t.IKE.Encryption)
	var integ, prf []string
	for _, a := range t.IKE.Integrity {
		integ = append(integ, string(a))
		prf = append(prf, "prf"+string(a))
	}
	dh := dhList(t.IKE.DHGroups)
	var out []string
	if len(classic) > 0 {
		out = append(out, join(classic, integ, dh))
	}
	if len(aead) > 0 {
		out = append(out, join(aead, prf, dh))
	}
	return out
}

// espProposals renders phase 2 likewise; without PFS no group is proposed.
func espProposals(t *Tunnel) []string {
	classic, aead := splitEncryption(t.ESP.Encryption)
	var integ []string
	for _, a := range t.ESP.Integrity {
		integ = append(integ, string(a))
	}
	var dh []string
	if !t.DisablePFS {
		dh = dhList(t.ESP.DHGroups)
	}
	var out []string
	if len(classic) > 0 {
		out = append(out, join(classic, integ, dh))
	}
	if len(aead) > 0 {
		out = append(out, join(aead, dh))
	}
	return out
}

func join(parts ...[]string) string {
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	return strings.Join(all, "-")
}
