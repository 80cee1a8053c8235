package ike

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"toride/dataplane/probe"
	"toride/ike/bgp"
	"toride/ike/charon"
	"toride/ike/internal/vici"
)

// Status is a snapshot of the IPsec engine, for `toride show ipsec` and GET /api/v1/ipsec/status.
type Status struct {
	// Backend is how SAs are installed: "kernel-netlink" or "kernel-libipsec" (decided by the kernel probe).
	Backend charon.Backend `json:"backend"`
	// Mode is "route-based" (one xfrm interface per tunnel, remote networks routed into the carrier's) where the
	// kernel has ESP and xfrm interfaces, else "policy-based" (the tunnels' selectors capture traffic).
	Mode         Mode               `json:"mode"`
	Capabilities probe.Capabilities `json:"capabilities"`
	Charon       charon.Health      `json:"charon"`
	// Connected is true while the engine has a VICI session with the running charon.
	Connected bool `json:"connected"`
	// Applied is true when the last desired configuration was loaded into the running charon.
	Applied     bool               `json:"applied"`
	LastError   string             `json:"last_error,omitempty"`
	Connections []ConnectionStatus `json:"connections"`
	// BGPRoutes are the paths the BGP sessions learned (routing mode bgp), best first per prefix; BGPProblems
	// says what the speaker could not do and which learned prefixes were not routed, and why.
	BGPRoutes   []bgp.LearnedRoute `json:"bgp_routes,omitempty"`
	BGPProblems []string           `json:"bgp_problems,omitempty"`
}

// TunnelBGPStatus is the BGP session over one tunnel.
type TunnelBGPStatus struct {
	// State is BGP's session state: idle, connect, active, opensent, openconfirm or established.
	State string `json:"state"`
	// UptimeSeconds is how long the session has been established.
	UptimeSeconds      int64  `json:"uptime_s"`
	PrefixesReceived   uint64 `json:"prefixes_received"`
	PrefixesAdvertised uint64 `json:"prefixes_advertised"`
	LocalPreference    uint32 `json:"local_preference"`
	ASPathPrepend      int    `json:"as_path_prepend"`
	LastDown           string `json:"last_down,omitempty"`
}

// ConnectionStatus is one connection.
type ConnectionStatus struct {
	Name string `json:"name"`
	// ActiveTunnel is the index of the tunnel carrying traffic to the remote networks, or -1 when none does or
	// which one does is not known yet (two tunnels installed at the same moment; resolved within a second).
	ActiveTunnel int `json:"active_tunnel"`
	// Failovers counts moves of traffic away from an unhealthy tunnel; Failbacks counts returns to the
	// preferred tunnel after its hold-down.
	Failovers uint64         `json:"failovers"`
	Failbacks uint64         `json:"failbacks"`
	Tunnels   []TunnelStatus `json:"tunnels"`
}

// TunnelStatus is one tunnel.
type TunnelStatus struct {
	Name          string `json:"name"`
	RemoteAddress string `json:"remote_address"`
	// Interface is the tunnel's xfrm interface in route-based mode.
	Interface string `json:"interface,omitempty"`
	// State is "up" when the tunnel can carry traffic: IKE SA established, CHILD SAs installed, probes answered.
	State  string `json:"state"`
	Active bool   `json:"active"`
	// IKESA and ChildSA are charon's state names of the IKE SA and of the traffic CHILD SA ("ESTABLISHED",
	// "INSTALLED", …), or "NONE".
	IKESA   string `json:"ike_sa"`
	ChildSA string `json:"child_sa"`
	// IKEAlgorithms and ChildAlgorithms are the negotiated suites, e.g. "AES_CBC-128/HMAC_SHA2_256_128/MODP_2048".
	IKEAlgorithms   string `json:"ike_algorithms,omitempty"`
	ChildAlgorithms string `json:"child_algorithms,omitempty"`
	// NATDetected is true when IKE found a NAT on the path; UDPEncap when ESP is sent in UDP 4500.
	NATDetected bool `json:"nat_detected"`
	UDPEncap    bool `json:"udp_encap"`
	// ProbeLoss is the share of the recent keepalive probes that got no answer (0–1); ProbeRTTMillis the last
	// answered probe's round trip.
	ProbeLoss      float64 `json:"probe_loss"`
	ProbeRTTMillis float64 `json:"probe_rtt_ms"`
	ProbesSent     uint64  `json:"probes_sent"`
	// ProbeAnswered is true once the probe target has answered over this tunnel (over any of its SAs since the
	// last restart the engine forced); until then lost probes do not count against the tunnel's health (a
	// target that never answers would make the tunnels flap).
	ProbeAnswered bool   `json:"probe_answered"`
	BytesIn       uint64 `json:"bytes_in"`
	BytesOut      uint64 `json:"bytes_out"`
	PacketsIn     uint64 `json:"packets_in"`
	PacketsOut    uint64 `json:"packets_out"`
	// Failovers counts how often traffic left this tunnel because it was unhealthy; Restarts how often the
	// engine tore it down and re-initiated it because its data path was dead.
	Failovers uint64 `json:"failovers"`
	Restarts  uint64 `json:"restarts"`
	// ReplayDrops and IntegrityFailures are what the kernel dropped on the tunnel's current SAs as replayed (or
	// outside the window) and as failing their integrity check; KernelEvents counts the hard expiries and
	// acquires it announced for the tunnel. Route-based mode only.
	ReplayDrops       uint64 `json:"replay_drops,omitempty"`
	IntegrityFailures uint64 `json:"integrity_failures,omitempty"`
	KernelEvents      uint64 `json:"kernel_events,omitempty"`
	// BGP is the tunnel's BGP session, with routing mode bgp in route-based mode.
	BGP        *TunnelBGPStatus `json:"bgp,omitempty"`
	LastChange time.Time        `json:"last_change,omitzero"`
}

// publish stores a new Status snapshot.
func (e *engine) publish() {
	st := Status{
		Backend:      e.backend,
		Mode:         e.mode,
		Capabilities: e.caps,
		Charon:       e.charon.Health(),
		Connected:    e.client != nil,
		Applied:      e.applied,
		LastError:    e.lastErr,
		Connections:  []ConnectionStatus{},
	}
	for _, cp := range e.plans {
		cs := e.conns[cp.name]
		c := ConnectionStatus{Name: cp.name, ActiveTunnel: -1}
		if cs != nil {
			c.ActiveTunnel, c.Failovers, c.Failbacks = cs.active, cs.failovers, cs.failbacks
		}
		for i, tp := range cp.tunnels {
			ts := TunnelStatus{Name: tp.name, RemoteAddress: tp.ikeConn.RemoteAddrs[0], Interface: tp.link.Name, State: "down",
				IKESA: "NONE", ChildSA: "NONE", Active: c.ActiveTunnel == i}
			if t := e.tunnels[tp.name]; t != nil {
				t.fill(&ts)
			}
			if cp.bgp != nil {
				ts.BGP = e.tunnelBGP(tp.name)
			}
			c.Tunnels = append(c.Tunnels, ts)
		}
		st.Connections = append(st.Connections, c)
	}
	st.BGPRoutes = e.bgpRoutes
	if e.bgp == nil && slices.ContainsFunc(e.plans, func(cp *connPlan) bool { return cp.bgp != nil }) {
		st.BGPProblems = append(st.BGPProblems, "BGP needs xfrm interfaces (the appliance's kernel) or kernel-libipsec "+
			"(a kernel without ESP); on this kernel ("+string(e.backend)+", ESP without xfrm interfaces) the tunnels come "+
			"up but no BGP session runs: use static routing here")
	}
	if e.bgpErr != "" {
		st.BGPProblems = append(st.BGPProblems, e.bgpErr)
	}
	st.BGPProblems = append(st.BGPProblems, e.bgpRejected...)
	e.s.status.Store(&st)
}

// tunnelBGP is the status of the BGP session over a tunnel.
func (e *engine) tunnelBGP(tunnel string) *TunnelBGPStatus {
	ts := &TunnelBGPStatus{State: bgp.StateIdle}
	for _, n := range e.bgpApplied.Neighbors {
		if n.Name == tunnel {
			ts.LocalPreference, ts.ASPathPrepend = n.LocalPreference, n.Prepend
		}
	}
	for _, n := range e.bgpStatus.Neighbors {
		if n.Name == tunnel {
			ts.State, ts.UptimeSeconds = n.State, int64(n.Uptime/time.Second)
			ts.PrefixesReceived, ts.PrefixesAdvertised, ts.LastDown = n.PrefixesReceived, n.PrefixesAdvertised, n.LastDown
		}
	}
	return ts
}

func (t *tunnelState) fill(ts *TunnelStatus) {
	if t.healthy {
		ts.State = "up"
	}
	ts.IKESA = saState(t.ike)
	if t.ike != nil {
		ts.IKEAlgorithms = algorithms(t.ike.EncrAlg, t.ike.EncrKeysize, t.ike.IntegAlg, t.ike.PRFAlg, t.ike.DHGroup)
		// kernel-libipsec makes charon fake a NAT to force UDP encapsulation: only a real one counts.
		ts.NATDetected = t.ike.NATLocal || (t.ike.NATRemote && !t.ike.NATFake)
	}
	children := append([]vici.ChildSA(nil), t.nets...)
	if t.probe != nil {
		children = append(children, *t.probe)
	}
	if n := len(t.nets); n > 0 {
		ts.ChildSA = t.nets[n-1].State
		c := t.nets[n-1]
		ts.ChildAlgorithms = algorithms(c.EncrAlg, c.EncrKeysize, c.IntegAlg, "", c.DHGroup)
	} else if t.probe != nil && t.plan.netChild == "" {
		ts.ChildSA = t.probe.State
		ts.ChildAlgorithms = algorithms(t.probe.EncrAlg, t.probe.EncrKeysize, t.probe.IntegAlg, "", t.probe.DHGroup)
	}
	for _, c := range children {
		ts.BytesIn += c.BytesIn
		ts.BytesOut += c.BytesOut
		ts.PacketsIn += c.PacketsIn
		ts.PacketsOut += c.PacketsOut
		ts.UDPEncap = ts.UDPEncap || c.Encap
	}
	ts.ProbeLoss = t.loss()
	ts.ProbeRTTMillis = float64(t.rtt.Microseconds()) / 1000
	ts.ProbesSent = t.sent
	ts.ProbeAnswered = t.answered
	ts.Failovers, ts.Restarts, ts.LastChange = t.failovers, t.restarts, t.lastChange
	ts.ReplayDrops, ts.IntegrityFailures, ts.KernelEvents = t.kernel.replayDrops, t.kernel.integrityFailures, t.kernelEvents
}

func saState(sa *vici.IKESA) string {
	if sa == nil {
		return "NONE"
	}
	return sa.State
}

func algorithms(encr string, keysize int, integ, prf, dh string) string {
	var parts []string
	if encr != "" {
		if keysize > 0 {
			encr = fmt.Sprintf("%s-%d", encr, keysize)
		}
		parts = append(parts, encr)
	}
	for _, p := range []string{integ, prf, dh} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// clone copies st deeply: every snapshot is shared by all its readers until they take their own copy.
func (st Status) clone() Status {
	st.Connections = slices.Clone(st.Connections)
	for i := range st.Connections {
		c := &st.Connections[i]
		c.Tunnels = slices.Clone(c.Tunnels)
		for j := range c.Tunnels {
			if b := c.Tunnels[j].BGP; b != nil {
				cp := *b
				c.Tunnels[j].BGP = &cp
			}
		}
	}
	st.BGPRoutes = slices.Clone(st.BGPRoutes)
	for i := range st.BGPRoutes {
		st.BGPRoutes[i].ASPath = slices.Clone(st.BGPRoutes[i].ASPath)
	}
	st.BGPProblems = slices.Clone(st.BGPProblems)
	st.Capabilities.Notes = slices.Clone(st.Capabilities.Notes)
	return st
}
