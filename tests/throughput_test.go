package tests

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/pki"
	"toride/tests/lab"
	"toride/tests/ovpnclient"
	"toride/tests/toridetest"
)

// BenchmarkOpenVPNThroughput is the side-by-side harness: the same stock openvpn client pushes iperf3 traffic to
// the same LAN host through torided and through the stock OpenVPN 2.6 server, both on the same box namespace, over
// TCP and UDP with AES-256-GCM. It reports each one's Mbit/s; compare the ratio within one run (the machine is
// shared and noisy). Run it with: go test ./tests -run '^$' -bench OpenVPNThroughput -benchtime 1x
func BenchmarkOpenVPNThroughput(b *testing.B) {
	l := lab.New(b, "openvpn", "iperf3", "unshare")
	boxNS := l.Namespace("box")
	cli := l.Namespace("cli")
	lan := l.Namespace("lan")
	l.Link(boxNS, "eth0", "", cli, "eth0", "192.0.2.2/24")
	l.Link(boxNS, "eth1", "", lan, "eth0", "10.50.0.2/24")
	lan.AddRoute("default", "10.50.0.1")
	lan.Start("iperf3", "-s", "-B", "10.50.0.2")

	// torided, configured through the API like an admin would.
	box := toridetest.Start(b, boxNS, b.TempDir())
	ctx := context.Background()
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	must(box.API.Do(ctx, "POST", "/api/v1/config/commands", map[string]any{"commands": []string{
		"set system interfaces eth0 address 192.0.2.1/24", "set system interfaces eth1 address 10.50.0.1/24"}}, nil))
	must(box.API.Do(ctx, "POST", "/api/v1/config/commit", nil, nil))
	var svc struct {
		VPNService struct{ ID string } `json:"vpnservice"`
	}
	must(box.API.Do(ctx, "POST", "/vpn/nfv/vpnservices", map[string]any{"vpnservice": map[string]any{
		"name": "office", "local_networks": []string{"10.50.0.0/24"}, "external_address": "192.0.2.1"}}, &svc))
	var conn struct {
		C struct{ ID string } `json:"ssl-vpn-v3-connection"`
	}
	must(box.API.Do(ctx, "POST", "/vpn/nfv/ssl-vpn-v3-connections", map[string]any{"ssl-vpn-v3-connection": map[string]any{
		"name": "main", "client_address_pool_cidr": "10.8.0.0/24", "vpnservice_id": svc.VPNService.ID, "flavor": "small"}}, &conn))
	base := "/vpn/nfv/ssl-vpn-v3-connections/" + conn.C.ID
	must(box.API.Do(ctx, "POST", base+"/users/bench/certificate", nil, nil))
	profiles := map[string]string{}
	for _, proto := range []string{"tcp", "udp"} {
		var raw []byte
		must(box.API.Do(ctx, "GET", base+"/client-config?user_id=bench&proto="+proto, nil, &raw))
		profiles[proto] = strings.Replace(string(raw), "data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305:AES-256-CBC:AES-128-CBC", "data-ciphers AES-256-GCM", 1)
	}

	// The stock OpenVPN server, on other ports and another pool, with its own PKI.
	dir := b.TempDir()
	ca, caPEM, _, _ := pki.NewCA("bench CA", 24*time.Hour)
	srv, _ := ca.IssueServer("stock", []string{"stock"}, []netip.Addr{netip.MustParseAddr("192.0.2.1")}, 24*time.Hour)
	cl, _ := ca.IssueClient("bench", 0)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	for _, s := range []struct{ proto, port, pool, dev string }{{"tcp-server", "1443", "10.9.0.0", "stocktcp"}, {"udp", "2194", "10.10.0.0", "stockudp"}} {
		conf := fmt.Sprintf(`mode server
tls-server
proto %s
port %s
local 192.0.2.1
dev %s
dev-type tun
topology subnet
server %s 255.255.255.0
push "route 10.50.0.0 255.255.255.0"
data-ciphers AES-256-GCM
disable-dco
dh none
keepalive 10 60
ca %s
cert %s
key %s
verb 3
`, s.proto, s.port, s.dev, s.pool, write("ca.pem", caPEM), write("srv.pem", srv.CertPEM), write("srv.key", srv.KeyPEM))
		p := boxNS.Start("openvpn", "--config", write(s.dev+".conf", conf))
		if err := p.WaitOutput(lab.Within(b, 10*time.Second), "Initialization Sequence Completed"); err != nil {
			b.Fatal(err)
		}
	}
	stock := func(proto, port string) string {
		return fmt.Sprintf("client\ndev tun\nproto %s\nremote 192.0.2.1 %s\nnobind\nremote-cert-tls server\ndata-ciphers AES-256-GCM\nverb 3\n<ca>\n%s</ca>\n<cert>\n%s</cert>\n<key>\n%s</key>\n",
			proto, port, caPEM, cl.CertPEM, cl.KeyPEM)
	}

	cases := []struct{ name, profile string }{
		{"toride-tcp", profiles["tcp"]}, {"stock-tcp", stock("tcp", "1443")},
		{"toride-udp", profiles["udp"]}, {"stock-udp", stock("udp", "2194")},
	}
	results := map[string]float64{}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			client := ovpnclient.Start(b, cli, ovpnclient.Options{Config: c.profile, User: "bench"})
			defer client.Stop()
			if err := client.WaitConnected(lab.Within(b, 20*time.Second)); err != nil {
				b.Fatal(err)
			}
			var mbps float64
			for range b.N {
				mbps = cli.IperfTCP(b, "10.50.0.2", 5)
			}
			results[c.name] = mbps
			b.ReportMetric(mbps, "Mbit/s")
		})
	}
	for _, proto := range []string{"tcp", "udp"} {
		if s := results["stock-"+proto]; s > 0 {
			b.Logf("%s: toride %.0f Mbit/s, stock OpenVPN %.0f Mbit/s, ratio %.2f", proto, results["toride-"+proto], s, results["toride-"+proto]/s)
		}
	}
}
