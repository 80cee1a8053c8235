package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"toride/appliance/api"
	"toride/appliance/ipsecsvc"
	"toride/ike"
	"toride/ike/bgp"
	"toride/sslvpn"
	"toride/sslvpn/datapath"
	"toride/sslvpn/userauth"
)

func sources() Sources {
	return Sources{
		Version: "v1.2.3",
		SSLVPN: func() ([]sslvpn.ServerStatus, []sslvpn.SessionInfo, userauth.Counters) {
			return []sslvpn.ServerStatus{{Name: "main", PoolInUse: 2, PoolCapacity: 253, Refused: map[string]uint64{"otp": 3},
					FailedHandshakes: map[string]uint64{"anyconnect": 4}, Datapath: datapath.Stats{ToClients: 100, FromClients: 90, Spoofed: 1}}},
				[]sslvpn.SessionInfo{
					{Server: "main", Protocol: "openvpn-udp", BytesIn: 1000, BytesOut: 2000, Since: time.Now()},
					{Server: "main", Protocol: "openvpn-udp", BytesIn: 10, BytesOut: 20, Since: time.Now()},
				},
				userauth.Counters{Accepted: 5, WrongCodes: 2, Replays: 1, Lockouts: 1, SourceBlocks: 1}
		},
		IPsec: func() ipsecsvc.Status {
			st := ipsecsvc.Status{Running: true}
			st.Connected = true
			st.Charon.Restarts = 2
			st.Connections = []ike.ConnectionStatus{{Name: "aws", Failovers: 1, Tunnels: []ike.TunnelStatus{
				{Name: "tunnel1", State: "up", Active: true, ProbeRTTMillis: 12, ProbeLoss: 0.25, BytesIn: 7},
				{Name: "tunnel2", State: "down"},
			}}, {Name: "dyn", Tunnels: []ike.TunnelStatus{
				{Name: "tunnel1", State: "up", BGP: &ike.TunnelBGPStatus{State: bgp.StateEstablished, UptimeSeconds: 90, PrefixesReceived: 3, PrefixesAdvertised: 1}},
				{Name: "tunnel2", State: "up", BGP: &ike.TunnelBGPStatus{State: bgp.StateActive}},
			}}}
			st.BGPRoutes = []bgp.LearnedRoute{{Best: true}, {}, {Best: true}}
			return st
		},
		Commits: func() (uint64, uint64) { return 4, 1 },
	}
}

// TestCollect: every metric comes from its source with its labels, and the registry's pedantic checks pass
// (consistent descriptions, no duplicate series).
func TestCollect(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(sources()))
	want := `
# HELP toride_sslvpn_sessions Connected SSL-VPN sessions.
# TYPE toride_sslvpn_sessions gauge
toride_sslvpn_sessions{protocol="anyconnect",server="main"} 0
toride_sslvpn_sessions{protocol="openvpn-tcp",server="main"} 0
toride_sslvpn_sessions{protocol="openvpn-udp",server="main"} 2
# HELP toride_sslvpn_login_failures_total Logins refused, by reason.
# TYPE toride_sslvpn_login_failures_total counter
toride_sslvpn_login_failures_total{reason="busy"} 0
toride_sslvpn_login_failures_total{reason="locked_out"} 0
toride_sslvpn_login_failures_total{reason="replayed_code"} 1
toride_sslvpn_login_failures_total{reason="slowed_down"} 0
toride_sslvpn_login_failures_total{reason="wrong_code"} 2
toride_sslvpn_login_failures_total{reason="wrong_password"} 0
# HELP toride_ipsec_tunnel_up 1 when the tunnel can carry traffic (IKE SA established, CHILD SAs installed, probes answered).
# TYPE toride_ipsec_tunnel_up gauge
toride_ipsec_tunnel_up{connection="aws",tunnel="tunnel1"} 1
toride_ipsec_tunnel_up{connection="aws",tunnel="tunnel2"} 0
toride_ipsec_tunnel_up{connection="dyn",tunnel="tunnel1"} 1
toride_ipsec_tunnel_up{connection="dyn",tunnel="tunnel2"} 1
# HELP toride_ipsec_probe_rtt_seconds The last answered keepalive probe's round trip.
# TYPE toride_ipsec_probe_rtt_seconds gauge
toride_ipsec_probe_rtt_seconds{connection="aws",tunnel="tunnel1"} 0.012
toride_ipsec_probe_rtt_seconds{connection="aws",tunnel="tunnel2"} 0
toride_ipsec_probe_rtt_seconds{connection="dyn",tunnel="tunnel1"} 0
toride_ipsec_probe_rtt_seconds{connection="dyn",tunnel="tunnel2"} 0
# HELP toride_ipsec_bgp_session_up 1 while the tunnel's BGP session is established (routing mode bgp).
# TYPE toride_ipsec_bgp_session_up gauge
toride_ipsec_bgp_session_up{connection="dyn",tunnel="tunnel1"} 1
toride_ipsec_bgp_session_up{connection="dyn",tunnel="tunnel2"} 0
# HELP toride_ipsec_bgp_prefixes_received Prefixes the tunnel's BGP session received.
# TYPE toride_ipsec_bgp_prefixes_received gauge
toride_ipsec_bgp_prefixes_received{connection="dyn",tunnel="tunnel1"} 3
toride_ipsec_bgp_prefixes_received{connection="dyn",tunnel="tunnel2"} 0
# HELP toride_ipsec_bgp_routes Learned BGP paths, and of them the best ones (routed into a tunnel).
# TYPE toride_ipsec_bgp_routes gauge
toride_ipsec_bgp_routes{kind="best"} 2
toride_ipsec_bgp_routes{kind="learned"} 3
# HELP toride_ipsec_charon_restarts_total Unplanned exits of the IKE daemon followed by a restart.
# TYPE toride_ipsec_charon_restarts_total counter
toride_ipsec_charon_restarts_total 2
# HELP toride_commit_failures_total Configuration commits refused by validation or failed to apply or save.
# TYPE toride_commit_failures_total counter
toride_commit_failures_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "toride_sslvpn_sessions", "toride_sslvpn_login_failures_total",
		"toride_ipsec_tunnel_up", "toride_ipsec_probe_rtt_seconds", "toride_ipsec_charon_restarts_total", "toride_commit_failures_total",
		"toride_ipsec_bgp_session_up", "toride_ipsec_bgp_prefixes_received", "toride_ipsec_bgp_routes"); err != nil {
		t.Error(err)
	}
	for name, want := range map[string]int{"toride_sslvpn_session_bytes": 6, "toride_sslvpn_refused_total": 1, "toride_ipsec_tunnel_active": 4,
		"toride_sslvpn_lockouts_total": 1, "toride_build_info": 1, "toride_ipsec_failovers_total": 2, "toride_commits_total": 1} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != want {
			t.Errorf("%s: %d series, %v; want %d", name, n, err, want)
		}
	}
}

// TestEndpoint: GET /metrics answers the text format; with no SSL-VPN or IPsec source only the build info and
// what is known come out.
func TestEndpoint(t *testing.T) {
	srv := api.New(api.Options{})
	New(Sources{Version: "v9"}).Register(srv)
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `toride_build_info{goversion="go`) || !strings.Contains(w.Body.String(), `version="v9"} 1`) ||
		strings.Contains(w.Body.String(), "toride_sslvpn") {
		t.Errorf("%d:\n%s", w.Code, w.Body)
	}
}
