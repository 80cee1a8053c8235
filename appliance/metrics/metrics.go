// Package metrics serves torided's state as Prometheus metrics (GET /metrics on the API socket and the HTTPS
// API). A collector reads the components' status at each scrape, the same status the API and the console show,
// so no packet or login path counts anything twice.
//
// Counters that the components keep since they started (logins, refusals, failovers, charon restarts, packets)
// are exported as counters; a restart of torided resets them, which Prometheus's rate() handles.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"toride/appliance/api"
	"toride/appliance/ipsecsvc"
	"toride/ike/bgp"
	"toride/sslvpn"
	"toride/sslvpn/userauth"
)

// Sources are where the collector reads the state; a nil source leaves its metrics out.
type Sources struct {
	Version string
	// SSLVPN is each server's status, the connected sessions and the login counters.
	SSLVPN func() ([]sslvpn.ServerStatus, []sslvpn.SessionInfo, userauth.Counters)
	IPsec  func() ipsecsvc.Status
	// Commits is how many commits were applied, and how many were refused or failed.
	Commits func() (committed, failed uint64)
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("toride_"+name, help, labels, nil)
}

var (
	buildInfo = desc("build_info", "The running torided's version (the value is 1).", "version", "goversion")

	sslSessions  = desc("sslvpn_sessions", "Connected SSL-VPN sessions.", "server", "protocol")
	sslBytes     = desc("sslvpn_session_bytes", "Bytes carried by the connected sessions, by direction as the client sees it.", "server", "protocol", "direction")
	sslPackets   = desc("sslvpn_packets_total", "Packets between the TUN device and the sessions: to_clients, from_clients.", "server", "direction")
	sslDrops     = desc("sslvpn_dropped_packets_total", "Packets the data path dropped, by reason.", "server", "reason")
	sslRefused   = desc("sslvpn_refused_total", "Clients refused by a server after their credentials, by reason.", "server", "reason")
	sslFailedHS  = desc("sslvpn_failed_handshakes_total", "Clients that failed before they logged in, by protocol.", "server", "protocol")
	sslPoolInUse = desc("sslvpn_pool_addresses_in_use", "Addresses of the pool leased or held.", "server")
	sslPoolSize  = desc("sslvpn_pool_addresses", "Addresses of the pool.", "server")
	logins       = desc("sslvpn_logins_total", "Logins accepted.")
	loginFails   = desc("sslvpn_login_failures_total", "Logins refused, by reason.", "reason")
	lockouts     = desc("sslvpn_lockouts_total", "User-and-source pairs locked out after failed logins.")
	sourceBlocks = desc("sslvpn_source_blocks_total", "Sources blocked after failed logins.")

	tunnelUp     = desc("ipsec_tunnel_up", "1 when the tunnel can carry traffic (IKE SA established, CHILD SAs installed, probes answered).", "connection", "tunnel")
	tunnelActive = desc("ipsec_tunnel_active", "1 for the tunnel carrying the connection's traffic.", "connection", "tunnel")
	probeRTT     = desc("ipsec_probe_rtt_seconds", "The last answered keepalive probe's round trip.", "connection", "tunnel")
	probeLoss    = desc("ipsec_probe_loss_ratio", "The share of the recent keepalive probes that got no answer.", "connection", "tunnel")
	tunnelBytes  = desc("ipsec_tunnel_bytes_total", "Bytes through the tunnel's SAs, by direction.", "connection", "tunnel", "direction")
	tunnelFail   = desc("ipsec_tunnel_failovers_total", "Moves of traffic away from the tunnel because it was unhealthy.", "connection", "tunnel")
	tunnelRest   = desc("ipsec_tunnel_restarts_total", "Restarts of the tunnel because its data path was dead.", "connection", "tunnel")
	connFail     = desc("ipsec_failovers_total", "Moves of the connection's traffic away from an unhealthy tunnel.", "connection")
	connBack     = desc("ipsec_failbacks_total", "Returns of the connection's traffic to the preferred tunnel.", "connection")
	bgpUp        = desc("ipsec_bgp_session_up", "1 while the tunnel's BGP session is established (routing mode bgp).", "connection", "tunnel")
	bgpUptime    = desc("ipsec_bgp_session_uptime_seconds", "How long the tunnel's BGP session has been established.", "connection", "tunnel")
	bgpReceived  = desc("ipsec_bgp_prefixes_received", "Prefixes the tunnel's BGP session received.", "connection", "tunnel")
	bgpSent      = desc("ipsec_bgp_prefixes_advertised", "Prefixes the tunnel's BGP session advertised.", "connection", "tunnel")
	bgpRoutes    = desc("ipsec_bgp_routes", "Learned BGP paths, and of them the best ones (routed into a tunnel).", "kind")
	bgpProblems  = desc("ipsec_bgp_problems", "What keeps BGP, or a learned prefix, from routing (show ipsec lists them).")
	charonUp     = desc("ipsec_charon_up", "1 while the IKE daemon runs and the engine has a session with it.")
	charonRest   = desc("ipsec_charon_restarts_total", "Unplanned exits of the IKE daemon followed by a restart.")

	commits       = desc("commits_total", "Configuration commits applied (rollbacks and API changes included).")
	commitFailure = desc("commit_failures_total", "Configuration commits refused by validation or failed to apply or save.")
)

// Collector is a prometheus.Collector of torided's state. It is safe for concurrent use if its sources are.
type Collector struct{ src Sources }

// New returns a Collector reading src.
func New(src Sources) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{buildInfo, sslSessions, sslBytes, sslPackets, sslDrops, sslRefused, sslFailedHS, sslPoolInUse,
		sslPoolSize, logins, loginFails, lockouts, sourceBlocks, tunnelUp, tunnelActive, probeRTT, probeLoss, tunnelBytes, tunnelFail,
		tunnelRest, connFail, connBack, bgpUp, bgpUptime, bgpReceived, bgpSent, bgpRoutes, bgpProblems, charonUp, charonRest, commits, commitFailure} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge(ch, buildInfo, 1, c.src.Version, runtime.Version())
	if c.src.SSLVPN != nil {
		c.collectSSLVPN(ch)
	}
	if c.src.IPsec != nil {
		c.collectIPsec(ch)
	}
	if c.src.Commits != nil {
		ok, failed := c.src.Commits()
		counter(ch, commits, ok)
		counter(ch, commitFailure, failed)
	}
}

func (c *Collector) collectSSLVPN(ch chan<- prometheus.Metric) {
	servers, sessions, auth := c.src.SSLVPN()
	type key struct{ server, protocol string }
	count := map[key]int{}
	in, out := map[key]uint64{}, map[key]uint64{}
	for _, s := range servers {
		// Every server shows its sessions by protocol, zero included, so that a series does not vanish.
		for _, p := range []string{"openvpn-tcp", "openvpn-udp", "anyconnect"} {
			count[key{s.Name, p}] += 0
		}
		gauge(ch, sslPoolInUse, float64(s.PoolInUse), s.Name)
		gauge(ch, sslPoolSize, float64(s.PoolCapacity), s.Name)
		for reason, n := range s.Refused {
			counter(ch, sslRefused, n, s.Name, reason)
		}
		for proto, n := range s.FailedHandshakes {
			counter(ch, sslFailedHS, n, s.Name, proto)
		}
		d := s.Datapath
		counter(ch, sslPackets, d.ToClients, s.Name, "to_clients")
		counter(ch, sslPackets, d.FromClients, s.Name, "from_clients")
		for reason, n := range map[string]uint64{"no_route": d.NoRoute, "session_queue_full": d.SessionDrop, "spoofed": d.Spoofed, "forbidden": d.Forbidden,
			"malformed": d.Malformed, "writer_queue_full": d.QueueFull, "write_error": d.WriteErrors} {
			counter(ch, sslDrops, n, s.Name, reason)
		}
	}
	for _, ss := range sessions {
		k := key{ss.Server, ss.Protocol}
		count[k]++
		in[k] += ss.BytesIn
		out[k] += ss.BytesOut
	}
	for k, n := range count {
		gauge(ch, sslSessions, float64(n), k.server, k.protocol)
		gauge(ch, sslBytes, float64(in[k]), k.server, k.protocol, "in")
		gauge(ch, sslBytes, float64(out[k]), k.server, k.protocol, "out")
	}
	counter(ch, logins, auth.Accepted)
	for reason, n := range map[string]uint64{"wrong_code": auth.WrongCodes, "replayed_code": auth.Replays, "wrong_password": auth.WrongPasswd,
		"locked_out": auth.WhileLocked, "slowed_down": auth.SlowedDown, "busy": auth.Busy} {
		counter(ch, loginFails, n, reason)
	}
	counter(ch, lockouts, auth.Lockouts)
	counter(ch, sourceBlocks, auth.SourceBlocks)
}

func (c *Collector) collectIPsec(ch chan<- prometheus.Metric) {
	st := c.src.IPsec()
	if !st.Running {
		return
	}
	gauge(ch, charonUp, bit(st.Connected))
	counter(ch, charonRest, uint64(max(st.Charon.Restarts, 0)))
	anyBGP := false
	for _, conn := range st.Connections {
		counter(ch, connFail, conn.Failovers, conn.Name)
		counter(ch, connBack, conn.Failbacks, conn.Name)
		for _, t := range conn.Tunnels {
			gauge(ch, tunnelUp, bit(t.State == "up"), conn.Name, t.Name)
			gauge(ch, tunnelActive, bit(t.Active), conn.Name, t.Name)
			gauge(ch, probeRTT, t.ProbeRTTMillis/1000, conn.Name, t.Name)
			gauge(ch, probeLoss, t.ProbeLoss, conn.Name, t.Name)
			counter(ch, tunnelBytes, t.BytesIn, conn.Name, t.Name, "in")
			counter(ch, tunnelBytes, t.BytesOut, conn.Name, t.Name, "out")
			counter(ch, tunnelFail, t.Failovers, conn.Name, t.Name)
			counter(ch, tunnelRest, t.Restarts, conn.Name, t.Name)
			if b := t.BGP; b != nil {
				anyBGP = true
				gauge(ch, bgpUp, bit(b.State == bgp.StateEstablished), conn.Name, t.Name)
				gauge(ch, bgpUptime, float64(b.UptimeSeconds), conn.Name, t.Name)
				gauge(ch, bgpReceived, float64(b.PrefixesReceived), conn.Name, t.Name)
				gauge(ch, bgpSent, float64(b.PrefixesAdvertised), conn.Name, t.Name)
			}
		}
	}
	if anyBGP {
		best := 0
		for _, r := range st.BGPRoutes {
			if r.Best {
				best++
			}
		}
		gauge(ch, bgpRoutes, float64(len(st.BGPRoutes)), "learned")
		gauge(ch, bgpRoutes, float64(best), "best")
		gauge(ch, bgpProblems, float64(len(st.BGPProblems)))
	}
}

// Register serves GET /metrics on s from a registry of c alone (no process or Go runtime collectors: the
// appliance's own state is what its operators scrape).
func (c *Collector) Register(s *api.Server) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	s.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}
