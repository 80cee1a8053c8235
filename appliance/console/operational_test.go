package console

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"toride/appliance/ipsecsvc"
	"toride/appliance/logring"
	"toride/appliance/sslvpnsvc"
	"toride/appliance/sysimage"
	"toride/appliance/system"
	"toride/ike"
	"toride/sslvpn"
	"toride/sslvpn/trust"
)

// statusAPI answers the state endpoints with fixed answers.
type statusAPI struct {
	*fakeAPI
	ipsec    ipsecsvc.Status
	sessions sslvpnsvc.Sessions
	logAsked []string
}

func (f *statusAPI) IPsecStatus(context.Context) (ipsecsvc.Status, error) { return f.ipsec, nil }
func (f *statusAPI) SSLVPNSessions(context.Context) (sslvpnsvc.Sessions, error) {
	return f.sessions, nil
}

func (f *statusAPI) SSLVPNStatus(context.Context) (sslvpnsvc.Status, error) {
	refused := map[string]uint64{}
	for _, r := range []string{"bad_certificate", "revoked", "wrong_code", "locked_out", "pool_exhausted", "max_sessions", "no_group"} {
		refused[r] = 123456
	}
	return sslvpnsvc.Status{Servers: []sslvpn.ServerStatus{{Name: "branch-office-east", Pool: "10.128.100.0/22",
		Sessions: 1000, MaxSessions: 1020, PoolInUse: 1000, PoolCapacity: 1021, Refused: refused,
		FailedHandshakes: map[string]uint64{"anyconnect": 5, "openvpn-tcp": 99999999, "openvpn-udp": 1000},
		CRLs: []trust.CRLInfo{{Issuer: "CN=Corp Root CA,O=Example Corporation", Number: "42", Revoked: 7,
			NextUpdate: time.Now().Add(-2 * time.Hour), Stale: true}}}}}, nil
}

func (f *statusAPI) SystemImage(context.Context) (sysimage.Status, error) {
	return sysimage.Status{Appliance: true, Running: "b", TrialBoot: true, Slots: []sysimage.SlotStatus{
		{Name: "a", Version: "v1.4.0-12-g0123abc", Default: true}, {Name: "b", Version: "v1.5.0", Running: true}}}, nil
}

func (f *statusAPI) Log(_ context.Context, component string, lines int) (logring.Lines, error) {
	f.logAsked = append(f.logAsked, fmt.Sprintf("%s %d", component, lines))
	return logring.Lines{Lines: []logring.Entry{{Time: time.Date(2026, 12, 5, 9, 0, 0, 0, time.Local), Level: "WARN", Component: "sslvpn",
		Message: "login refused", Attrs: "user=alice reason=otp"}}}, nil
}

func (f *statusAPI) Interfaces(context.Context) (system.Interfaces, error) {
	return system.Interfaces{Interfaces: []system.InterfaceStatus{
		{Name: "eth0", Up: true, Running: true, MTU: 1500, Addresses: []string{"192.0.2.1/24", "2001:db8:1234:5678::1/64"},
			RxBytes: 123456789, TxBytes: 4096, RxErrors: 1, TxErrors: 2, RxDropped: 3},
		{Name: "eth1", Up: true, MTU: 9000, Addresses: []string{}},
		{Name: "lo", MTU: 65536},
	}}, nil
}

func newStatusAPI() *statusAPI {
	tunnel := func(name, ifname, peer string, active bool) ike.TunnelStatus {
		return ike.TunnelStatus{Name: name, Interface: ifname, RemoteAddress: peer, State: "up", Active: active,
			IKESA: "ESTABLISHED", ChildSA: "INSTALLED", IKEAlgorithms: "AES_GCM_16-256/PRF_HMAC_SHA2_256/ECP_384",
			ChildAlgorithms: "AES_GCM_16-256", ProbeLoss: 0.25, ProbeRTTMillis: 12.5, ProbesSent: 40, ProbeAnswered: true,
			BytesIn: 123456789, BytesOut: 98765, PacketsIn: 100000, PacketsOut: 900, Failovers: 3, Restarts: 1, NATDetected: true, UDPEncap: true}
	}
	st := ipsecsvc.Status{Running: true}
	st.Backend, st.Mode = "kernel-netlink", "route-based"
	st.Connections = []ike.ConnectionStatus{{Name: "aws-prod", Failovers: 3, Failbacks: 2, Tunnels: []ike.TunnelStatus{
		tunnel("tunnel1", "aws-prod-t1", "203.0.113.101", true), tunnel("tunnel2", "aws-prod-t2", "198.51.100.202", false)}}}
	st.Connections[0].Tunnels[0].BGP = &ike.TunnelBGPStatus{State: "established", UptimeSeconds: 60, LocalPreference: 200}
	started := time.Now().Add(-(3*time.Hour + 5*time.Minute))
	return &statusAPI{fakeAPI: newFakeAPI(baseConfig), ipsec: st, sessions: sslvpnsvc.Sessions{Sessions: []sslvpn.SessionInfo{
		{ID: "0123456789abcdef", Server: "branch", Protocol: "anyconnect", Group: "staff", User: "alice.martin",
			Remote: "[2001:db8::1234]:50443", Address: "10.8.100.200", Cipher: "AES-256-GCM", DTLS: true, CertSerial: "1f2e3d",
			Since: started, BytesIn: 5 << 30, BytesOut: 700 << 20},
		{ID: "fedcba9876543210", Server: "main", Protocol: "openvpn", User: "bob", Remote: "192.0.2.7:1194",
			Address: "10.8.0.2", Cipher: "AES-128-CBC", Since: started, BytesIn: 10, BytesOut: 2048, Forbidden: 17},
	}}}
}

func run(t *testing.T, a API, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	sh := New(Options{API: a, Stdout: &out, Stderr: &out})
	if err := sh.Exec(context.Background(), args); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestTablesFit80Columns: show ipsec, show sslvpn and its sessions fit an 80-column console with realistic names
// and still give what an admin (and the end-to-end tests) look for; their detail views give every field.
func TestTablesFit80Columns(t *testing.T) {
	a := newStatusAPI()
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"show", "ipsec"}, []string{"Connection aws-prod:", "tunnel1*", "tunnel2 ", "aws-prod-t1", "203.0.113.101",
			"ESTABLISHED/INSTALLED", " up ", "25%", "(backend: kernel-netlink, route-based)", "BGP aws-prod tunnel1: established 1m0s, routes 0 in 0 out, pref 200"}},
		{[]string{"show", "interfaces"}, []string{"eth0       up          1500   118M  4.0K  3/3       192.0.2.1/24\n",
			"\n" + strings.Repeat(" ", 52) + "2001:db8:1234:5678::1/64\n", "eth1       no-carrier  9000   0B    0B    0/0       -\n",
			"lo         down        65536"}},
		{[]string{"show", "ipsec", "detail"}, []string{"Connection aws-prod: 3 failover(s), 2 failback(s)",
			"Tunnel tunnel1: up, carrying the traffic", "AES_GCM_16-256/PRF_HMAC_SHA2_256/ECP_384", "ESP in UDP 4500",
			"40 sent, 25% lost, RTT 12.5ms, answered", "118M in 100000 packets", "3, restarts 1", "(backend: kernel-netlink, route-based)"}},
		{[]string{"show", "system", "image"}, []string{"A     v1.4.0-12-g0123abc  default\n", "B     v1.5.0              running\n",
			"a trial not kept yet"}},
		{[]string{"show", "sslvpn"}, []string{"branch-office-east", "1000/1020", "10.128.100.0/22", "1000/1021", "864192",
			"100001004", "revoked=123456", "openvpn-udp=1000", "CRL of CN=Corp Root CA", "number 42, 7 revoked", "STALE for 2h0m0s"}},
		{[]string{"show", "sslvpn", "sessions"}, []string{"Server branch:", "Server main:", "01234567", "alice.martin", "anyconnect", "10.8.100.200", "AES-256-GCM", "3h05m",
			"5.0G/700M", "fedcba98", "AES-128-CBC", "10.8.0.2", "10B/2.0K", "fedcba98 (bob): 17 packets to networks not given to it, dropped"}},
		{[]string{"show", "sslvpn", "sessions", "detail"}, []string{"Session 0123456789abcdef", "alice.martin (group staff)", "DTLS",
			"[2001:db8::1234]:50443", "serial 1f2e3d", "5368709120 in, 734003200 out", "0 packets to networks not given to it"}},
	} {
		out := run(t, a, tt.args...)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", strings.Join(tt.args, " "), w, out)
			}
		}
		for _, l := range strings.Split(out, "\n") {
			if n := utf8.RuneCountInString(l); n > 80 {
				t.Errorf("%s: %d columns: %q", strings.Join(tt.args, " "), n, l)
			}
		}
	}
}

func TestHumanBytesAndSince(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0K", 1536: "1.5K", 5 << 30: "5.0G", 3 << 40: "3.0T", 1 << 50: "1024T", 117 << 20: "117M"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{45 * time.Second: "45s", 12*time.Minute + 30*time.Second: "12m30s",
		3*time.Hour + 5*time.Minute: "3h05m", 52 * time.Hour: "2d04h"} {
		if got := since(time.Now().Add(-d)); got != want {
			t.Errorf("since(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestShowLog: show log asks for a component's lines (50 unless told) and prints each record on one line; a bad
// count or word is refused before asking; ? offers the components and lines.
func TestShowLog(t *testing.T) {
	a := newStatusAPI()
	for line, want := range map[string]string{"show log": " 50", "show log sslvpn": "sslvpn 50", "show log lines 5": " 5", "show log ipsec lines 200": "ipsec 200"} {
		a.logAsked = nil
		out := run(t, a, strings.Fields(line)...)
		if !slices.Equal(a.logAsked, []string{want}) {
			t.Errorf("%s asked %q, want %q", line, a.logAsked, want)
		}
		if !strings.Contains(out, "2026-12-05 09:00:00 WARN  sslvpn: login refused user=alice reason=otp") {
			t.Errorf("%s:\n%s", line, out)
		}
	}
	a.logAsked = nil
	for _, line := range []string{"show log lines 0", "show log lines x", "show log wibble", "show log sslvpn lines"} {
		sh := New(Options{API: a, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
		if err := sh.Exec(context.Background(), strings.Fields(line)); err == nil {
			t.Errorf("%s: no error", line)
		}
	}
	if a.logAsked != nil {
		t.Errorf("bad lines asked %q", a.logAsked)
	}
	for line, want := range map[string][]string{
		"show log ":        {"lines", "api", "ipsec", "ntp", "sslvpn", "store", "system", "<Enter>"},
		"show log sslvpn ": {"lines", "<Enter>"},
		"show log lines ":  {"<N>", "<Enter>"},
	} {
		_, items, err := New(Options{API: a}).Complete(context.Background(), line)
		if got := words(items); err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %q, %v; want %q", line, got, err, want)
		}
	}
}
