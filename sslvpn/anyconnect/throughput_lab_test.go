package anyconnect_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"toride/dataplane/tun"
	"toride/sslvpn/anyconnect"
	"toride/sslvpn/datapath"
	"toride/sslvpn/internal/enginetest"
	"toride/tests/lab"
)

// tunBackend admits every login and routes sessions through the core's real datapath: a TUN device in the
// server namespace (10.8.0.1/24), where iperf3 listens.
type tunBackend struct {
	*testBackend
	dp   *datapath.Device
	mu   sync.Mutex
	next byte
}

func (b *tunBackend) Connect(ctx context.Context, req *anyconnect.ConnectRequest, s anyconnect.Session) (*anyconnect.Grant, error) {
	b.mu.Lock()
	b.next++
	addr := netip.AddrFrom4([4]byte{10, 8, 0, 1 + b.next})
	b.mu.Unlock()
	up, err := b.dp.Attach(addr, s, datapath.NewReach([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, nil))
	if err != nil {
		return nil, err
	}
	b.connected <- s
	return &anyconnect.Grant{Uplink: up, Address: netip.PrefixFrom(addr, 24)}, nil
}

// BenchmarkOpenconnectThroughput pushes iperf3 TCP traffic from a stock openconnect client through the engine
// and the core's TUN datapath to an iperf3 server in the gateway's namespace, over DTLS and with UDP blocked
// (CSTP over TLS); then the same client through ocserv (Debian's) in the same namespace, for comparison.
// Client, server and iperf3 share the machine's cores: compare the ratios within one run.
// Run it with: go test ./sslvpn/anyconnect -run '^$' -bench OpenconnectThroughput -benchtime 1x
func BenchmarkOpenconnectThroughput(b *testing.B) {
	results := map[string]float64{}
	for _, server := range []string{"toride", "ocserv"} {
		for _, mode := range []string{"dtls", "cstp"} {
			b.Run(server+"-"+mode, func(b *testing.B) {
				results[server+"-"+mode] = throughput(b, server, mode)
			})
		}
	}
	for _, mode := range []string{"dtls", "cstp"} {
		if o := results["ocserv-"+mode]; o > 0 {
			b.Logf("%s: toride %.0f Mbit/s, ocserv %.0f Mbit/s, ratio %.2f", mode, results["toride-"+mode], o, results["toride-"+mode]/o)
		}
	}
}

func throughput(b *testing.B, server, mode string) float64 {
	tools := []string{"openconnect", "iperf3", "nft"}
	if server == "ocserv" {
		tools = append(tools, "ocserv")
	}
	e := newInteropLab(b, nil, tools...)
	// World-readable: ocserv's workers run as nobody and reach the sec-mod socket in it.
	_ = os.Chmod(e.lab.Dir, 0o755)
	srvNS, cliNS := e.lab.Server, e.lab.Client
	srvNS.Start("iperf3", "-s")
	var s anyconnect.Session
	var c *client
	target := "10.8.0.1"
	switch server {
	case "toride":
		dev, err := tun.Kernel{Netns: "/run/netns/" + srvNS.Name}.Create("actun", 1500)
		if err != nil {
			b.Fatal(err)
		}
		dp, err := datapath.New(dev, datapath.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { dp.Close() })
		srvNS.AddAddr("actun", "10.8.0.1/24")
		srvNS.LinkUp("actun")
		be := &tunBackend{testBackend: e.be, dp: dp}
		if e.srv, err = anyconnect.NewServer(anyconnect.Config{TLS: e.pki.serverTLS(), DTLS: true,
			Groups: []anyconnect.Group{{Name: "staff", Password: true}}}, be); err != nil {
			b.Fatal(err)
		}
		e.serve()
		if mode == "cstp" {
			e.blockUDP(true)
		}
		c = e.openconnect("alice-pw\n", "-u", "alice", "--passwd-on-stdin")
	case "ocserv":
		target = "10.9.0.1"
		e.startOcserv()
		if mode == "cstp" {
			e.blockUDP(true)
		}
		cert, key := e.pki.ClientFiles(b, e.lab.Dir, 10, "alice")
		c = e.openconnectURL(fmt.Sprintf("https://%s:%d/", enginetest.ServerIP, ocservPort), "", "-c", cert, "-k", key)
	}
	if mode == "dtls" {
		c.waitOutput("Established DTLS connection", 15*time.Second)
	}
	c.waitConnected(15 * time.Second)
	if server == "toride" {
		s = e.connectedSession(5 * time.Second)
	}
	e.ping(target, 10*time.Second)
	var mbps float64
	for range b.N {
		mbps = cliNS.IperfTCP(b, target, 5)
	}
	b.ReportMetric(mbps, "Mbit/s")
	if s != nil {
		st := s.Stats()
		if (mode == "dtls") != (st.DTLSPacketsIn > st.PacketsIn/2) {
			b.Errorf("%s run, but: %+v", mode, st)
		}
		b.Logf("%s %s: %.0f Mbit/s (session %+v)", server, mode, mbps, st)
	}
	return mbps
}

const ocservPort = 8443

// startOcserv runs Debian's ocserv in the server namespace on port 8443 (TCP and UDP), certificate login,
// pool 10.9.0.0/24, TLS 1.3 allowed as for the engine.
func (e *interop) startOcserv() {
	e.t.Helper()
	w := func(name string, data []byte) string {
		p := filepath.Join(e.lab.Dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			e.t.Fatal(err)
		}
		return p
	}
	conf := fmt.Sprintf(`auth = "certificate"
listen-host = %s
tcp-port = %d
udp-port = %d
run-as-user = nobody
run-as-group = nogroup
socket-file = %s/ocserv-socket
isolate-workers = false
server-cert = %s
server-key = %s
ca-cert = %s
cert-user-oid = 2.5.4.3
max-clients = 16
keepalive = 32400
dpd = 90
try-mtu-discovery = false
tls-priorities = "NORMAL:%%SERVER_PRECEDENCE:%%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
auth-timeout = 240
cookie-timeout = 300
use-occtl = false
pid-file = %s/ocserv.pid
device = ocvpn
ipv4-network = 10.9.0.0
ipv4-netmask = 255.255.255.0
`, enginetest.ServerIP, ocservPort, ocservPort, e.lab.Dir, w("srv.crt", e.pki.ServerCertPEM), w("srv.key", e.pki.ServerKeyPEM), w("ca.crt", e.pki.CAPEM), e.lab.Dir)
	p := e.lab.Server.Start("ocserv", "-f", "-c", w("ocserv.conf", []byte(conf)))
	if err := p.WaitOutput(lab.Within(e.t, 10*time.Second), "listening (UDP)"); err != nil {
		e.t.Fatal(err)
	}
}
