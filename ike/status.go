package ike

import (
	"time"

	"toride/dataplane/probe"
	"toride/ike/charon"
)

// Status is a snapshot of the IPsec engine, for `toride show ipsec` and GET /api/v1/ipsec/status.
type Status struct {
	// Backend is how SAs are installed: "kernel-netlink" or "kernel-libipsec" (decided by the kernel probe).
	Backend      charon.Backend     `json:"backend"`
	Capabilities probe.Capabilities `json:"capabilities"`
	Charon       charon.Health      `json:"charon"`
	// Connected is true while the engine has a VICI session with the running charon.
	Connected bool `json:"connected"`
	// Applied is true when the last desired configuration was loaded into the running charon.
	Applied     bool               `json:"applied"`
	LastError   string             `json:"last_error,omitempty"`
	Connections []ConnectionStatus `json:"connections"`
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
	Failovers  uint64    `json:"failovers"`
	Restarts   uint64    `json:"restarts"`
	LastChange time.Time `json:"last_change,omitzero"`
}
