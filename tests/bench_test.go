package tests

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/pki"
	"toride/tests/lab"
	"toride/tests/occlient"
	"toride/tests/ovpnclient"
)

// BenchmarkSideBySide is the side-by-side harness that `make bench` runs: the same stock client (openvpn 2.6,
// openconnect) moves iperf3 TCP traffic to and from the same LAN host through torided and through the peer that
// serves its protocol elsewhere (the OpenVPN 2.6 server, ocserv), all on one box namespace with the defaults a user
// gets: torided configured through the cloud-style API, its profiles downloaded and used unedited (the AES-128-CBC
// row uses the cloud guide's cipher lines, as its users' old profiles do).
//
// For every path and direction it measures the throughput, and the processor time the server (its process and
// the workers it forks) and the client spent per gigabyte carried. The ceiling is plain routing between the same
// namespaces. The table goes to bench-results.md at the repository's root (TORIDE_BENCH_RESULTS names another
// file); BENCHMARKS.md keeps the latest committed one. Client, server and iperf3 share the machine's cores, and the
// machine is noisy: compare within one run.
func BenchmarkSideBySide(b *testing.B) {
	lab.Require(b, "iperf3", "ocserv", "openconnect")
	v := newVPNLab(b, false, "--log-level", "info")
	box := v.box.NS
	iperf := v.lan.IperfServer("10.50.0.2")
	results := &benchResults{}

	// The ceiling: the client routes to the LAN through the box, no tunnel. The route goes before any client
	// adds the LAN's route through its tunnel.
	v.client.AddRoute("10.50.0.0/24", "192.0.2.1")
	for _, download := range []bool{false, true} {
		t := iperf.Run(b, v.client, 5, download)
		results.add(benchRow{path: "ceiling: plain routing, no tunnel", download: download, toride: benchSample{mbps: t.Mbps}})
	}
	v.client.MustRun("ip", "route", "del", "10.50.0.0/24")

	peers := startPeers(b, box)
	gcm := func(proto string) func(b *testing.B) *benchClient {
		profile := v.profile("bench", "&proto="+proto)
		return func(b *testing.B) *benchClient {
			return startOpenVPN(b, v.client, profile, "AES-256-GCM")
		}
	}
	cbc := strings.Replace(v.profile("bench", ""), "data-ciphers ", "cipher AES-128-CBC\nncp-ciphers AES-128-CBC\n# ", 1)
	ac := v.acUser("bench")
	paths := []struct {
		name          string
		peer          string
		peerProc      *lab.Process
		toride, stock func(b *testing.B) *benchClient
	}{
		{"OpenVPN UDP, AES-256-GCM", "OpenVPN 2.6", peers.udp, gcm("udp"), func(b *testing.B) *benchClient {
			return startOpenVPN(b, v.client, peers.profile("udp", 2194, ""), "AES-256-GCM")
		}},
		{"OpenVPN TCP, AES-256-GCM", "OpenVPN 2.6", peers.tcp, gcm("tcp"), func(b *testing.B) *benchClient {
			return startOpenVPN(b, v.client, peers.profile("tcp", 1443, ""), "AES-256-GCM")
		}},
		{"OpenVPN TCP, AES-128-CBC (the cloud guide's profile)", "OpenVPN 2.6", peers.cbc,
			func(b *testing.B) *benchClient { return startOpenVPN(b, v.client, cbc, "AES-128-CBC") },
			func(b *testing.B) *benchClient {
				return startOpenVPN(b, v.client, peers.profile("tcp", 1444, "cipher AES-128-CBC\nncp-ciphers AES-128-CBC\n"), "AES-128-CBC")
			}},
		{"AnyConnect DTLS", "ocserv", peers.ocserv,
			func(b *testing.B) *benchClient { return startOpenconnect(b, v.client, "https://192.0.2.1/", ac, true) },
			func(b *testing.B) *benchClient {
				return startOpenconnect(b, v.client, fmt.Sprintf("https://192.0.2.1:%d/", ocservPort), peers.ocservClient, true)
			}},
		{"AnyConnect CSTP (TLS, no DTLS)", "ocserv", peers.ocserv,
			func(b *testing.B) *benchClient { return startOpenconnect(b, v.client, "https://192.0.2.1/", ac, false) },
			func(b *testing.B) *benchClient {
				return startOpenconnect(b, v.client, fmt.Sprintf("https://192.0.2.1:%d/", ocservPort), peers.ocservClient, false)
			}},
	}
	for _, p := range paths {
		rows := [2]benchRow{{path: p.name, peer: p.peer}, {path: p.name, peer: p.peer, download: true}}
		b.Run(strings.NewReplacer(" ", "", ",", "-", "(", "", ")", "", "'", "").Replace(p.name), func(b *testing.B) {
			// Rounds alternate the two servers, so that a slow spell of the machine falls on both; each cell
			// is the median of its rounds.
			var samples [2][2][]benchSample // [toride, peer][up, down]
			for range b.N * benchRounds() {
				for si, server := range []string{"toride", "peer"} {
					start, proc := p.toride, v.box.Proc
					if server == "peer" {
						start, proc = p.stock, p.peerProc
					}
					c := start(b)
					if err := v.client.Ping("10.50.0.2", 3); err != nil {
						b.Fatalf("%s: no ping to the LAN host through the tunnel: %v", server, err)
					}
					for di, row := range rows {
						name := b.Name() + "-" + server + map[bool]string{false: "-up", true: "-down"}[row.download]
						stop := profile(b, proc, name)
						samples[si][di] = append(samples[si][di], measure(b, iperf, v.client, proc, c.proc, row.download))
						stop()
					}
					c.stop()
				}
			}
			for di := range rows {
				rows[di].toride, rows[di].peerFig = median(samples[0][di]), median(samples[1][di])
				dir := map[bool]string{false: "up", true: "down"}[rows[di].download]
				b.ReportMetric(rows[di].toride.mbps, "toride-"+dir+"-Mbit/s")
				b.ReportMetric(rows[di].toride.serverCPU, "toride-"+dir+"-CPU-s/GB")
				b.ReportMetric(rows[di].peerFig.mbps, "peer-"+dir+"-Mbit/s")
				b.ReportMetric(rows[di].peerFig.serverCPU, "peer-"+dir+"-CPU-s/GB")
			}
		})
		results.add(rows[:]...)
	}
	path := os.Getenv("TORIDE_BENCH_RESULTS")
	if path == "" {
		path = filepath.Join("..", "bench-results.md") // go test runs in the package's directory
	}
	if err := os.WriteFile(path, []byte(results.markdown()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("results in %s:\n%s", path, results.markdown())
}

// benchRounds is how many times each path is measured on each server: TORIDE_BENCH_ROUNDS, 3 by default.
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("TORIDE_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// median is each figure's median over the samples.
func median(s []benchSample) benchSample {
	if len(s) == 0 {
		return benchSample{}
	}
	of := func(f func(benchSample) float64) float64 {
		v := make([]float64, len(s))
		for i := range s {
			v[i] = f(s[i])
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return benchSample{mbps: of(func(x benchSample) float64 { return x.mbps }),
		serverCPU: of(func(x benchSample) float64 { return x.serverCPU }),
		clientCPU: of(func(x benchSample) float64 { return x.clientCPU })}
}

// benchClient is one VPN client running for a measurement.
type benchClient struct {
	proc *lab.Process
	stop func()
}

// startOpenVPN starts the stock client on profile and waits until its tunnel is up with the cipher wanted.
func startOpenVPN(b *testing.B, ns *lab.Netns, profile, cipher string) *benchClient {
	b.Helper()
	c := ovpnclient.Start(b, ns, ovpnclient.Options{Config: profile})
	if err := c.WaitConnected(lab.Within(b, 20*time.Second)); err != nil {
		b.Fatal(err)
	}
	if err := c.WaitLog(lab.Within(b, time.Second), "Data Channel: cipher '"+cipher+"'"); err != nil {
		b.Fatalf("not on %s: %v", cipher, err)
	}
	return &benchClient{proc: c.Proc, stop: c.Stop}
}

// startOpenconnect starts the stock client with a certificate and waits for its tunnel: on DTLS, or, with dtls
// false, on its TLS connection alone (--no-dtls).
func startOpenconnect(b *testing.B, ns *lab.Netns, url string, f acFiles, dtls bool) *benchClient {
	b.Helper()
	args := []string{"-c", f.cert, "-k", f.key}
	if !dtls {
		args = append(args, "--no-dtls")
	}
	c := occlient.Start(b, ns, occlient.Options{Server: url, CAFile: f.ca, Args: args})
	if _, err := c.WaitConnected(lab.Within(b, 20*time.Second)); err != nil {
		b.Fatal(err)
	}
	if dtls {
		if err := c.WaitLog(lab.Within(b, 10*time.Second), "Established DTLS connection"); err != nil {
			b.Fatalf("no DTLS: %v", err)
		}
	}
	return &benchClient{proc: c.Proc, stop: c.Stop}
}

// profile records, when TORIDE_BENCH_PERF names a directory, the server's call graph with perf (Debian's
// linux-perf) while a measurement runs, into DIR/NAME.perf: `perf report -i` reads it. The returned function ends
// the recording.
func profile(b *testing.B, server *lab.Process, name string) (stop func()) {
	dir := os.Getenv("TORIDE_BENCH_PERF")
	if dir == "" {
		return func() {}
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "-", "'", "").Replace(name)+".perf")
	cmd := exec.Command("perf", "record", "-q", "-g", "-F", "499", "-p", fmt.Sprint(server.Pid()), "-o", out)
	if err := cmd.Start(); err != nil {
		b.Fatalf("perf: %v", err)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

// benchSample is one iperf3 run: its rate and the processor seconds spent per gigabyte (10⁹ bytes) carried.
type benchSample struct{ mbps, serverCPU, clientCPU float64 }

// measure runs iperf3 from the client namespace to the LAN host (or back, with download) and charges the
// processor time the server and client processes spent meanwhile to the bytes iperf3's receiver got.
func measure(b *testing.B, iperf *lab.IperfServer, cli *lab.Netns, server, client *lab.Process, download bool) benchSample {
	b.Helper()
	cpu := func(p *lab.Process) time.Duration {
		d, err := p.CPUTime()
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	s0, c0 := cpu(server), cpu(client)
	t := iperf.Run(b, cli, 5, download)
	s1, c1 := cpu(server), cpu(client)
	gb := float64(t.Bytes) / 1e9
	if gb == 0 {
		b.Fatalf("iperf3 moved nothing")
	}
	return benchSample{mbps: t.Mbps, serverCPU: (s1 - s0).Seconds() / gb, clientCPU: (c1 - c0).Seconds() / gb}
}

// peers are the reference servers, in the box namespace beside torided: the stock OpenVPN 2.6 server on TCP 1443
// (AES-256-GCM), TCP 1444 (AES-128-CBC) and UDP 2194; ocserv on 8443. Each has its own pool; they share one CA.
type peers struct {
	udp, tcp, cbc, ocserv *lab.Process
	ca                    string // PEM
	client                pki.Issued
	ocservClient          acFiles
}

const ocservPort = 8443

func startPeers(b *testing.B, box *lab.Netns) *peers {
	b.Helper()
	// World-readable: ocserv's workers run as nobody and reach the sec-mod socket in it.
	dir, err := os.MkdirTemp("", "peers-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	ca, caPEM, _, err := pki.NewCA("peers CA", 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := ca.IssueServer("peer", []string{"peer"}, []netip.Addr{netip.MustParseAddr("192.0.2.1")}, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := ca.IssueClient("bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	p := &peers{ca: caPEM, client: cl}
	caFile, certFile, keyFile := write("ca.pem", caPEM), write("srv.pem", srv.CertPEM), write("srv.key", srv.KeyPEM)
	p.ocservClient = acFiles{ca: caFile, cert: write("client.pem", cl.CertPEM), key: write("client.key", cl.KeyPEM)}
	openvpn := func(proto string, port int, pool, dev, extra string) *lab.Process {
		conf := fmt.Sprintf(`mode server
tls-server
proto %s
port %d
local 192.0.2.1
dev %s
dev-type tun
topology subnet
server %s 255.255.255.0
push "route 10.50.0.0 255.255.255.0"
%sdisable-dco
dh none
keepalive 10 60
ca %s
cert %s
key %s
verb 3
`, proto, port, dev, pool, extra, caFile, certFile, keyFile)
		proc := box.Start("openvpn", "--config", write(dev+".conf", conf))
		if err := proc.WaitOutput(lab.Within(b, 10*time.Second), "Initialization Sequence Completed"); err != nil {
			b.Fatal(err)
		}
		return proc
	}
	p.tcp = openvpn("tcp-server", 1443, "10.9.0.0", "stocktcp", "")
	p.cbc = openvpn("tcp-server", 1444, "10.12.0.0", "stockcbc", "data-ciphers AES-128-CBC\n")
	p.udp = openvpn("udp", 2194, "10.10.0.0", "stockudp", "")

	conf := fmt.Sprintf(`auth = "certificate"
listen-host = 192.0.2.1
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
ipv4-network = 10.11.0.0
ipv4-netmask = 255.255.255.0
route = 10.50.0.0/255.255.255.0
`, ocservPort, ocservPort, dir, certFile, keyFile, caFile, dir)
	p.ocserv = box.Start("ocserv", "-f", "-c", write("ocserv.conf", conf))
	if err := p.ocserv.WaitOutput(lab.Within(b, 10*time.Second), "listening (UDP)"); err != nil {
		b.Fatal(err)
	}
	return p
}

// profile is the stock server's client profile: the lines of torided's downloaded one, with the peer's CA and
// certificate; cipherLines, when set, replace its data-ciphers line.
func (p *peers) profile(proto string, port int, cipherLines string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client\ndev tun\nproto %s\nremote 192.0.2.1 %d\nresolv-retry infinite\nnobind\npersist-key\npersist-tun\nremote-cert-tls server\n", proto, port)
	if cipherLines != "" {
		b.WriteString(cipherLines)
	} else {
		b.WriteString("data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305:AES-256-CBC:AES-128-CBC\n")
	}
	if proto == "udp" {
		b.WriteString("explicit-exit-notify 1\n")
	}
	fmt.Fprintf(&b, "verb 3\n<ca>\n%s</ca>\n<cert>\n%s</cert>\n<key>\n%s</key>\n", p.ca, p.client.CertPEM, p.client.KeyPEM)
	return b.String()
}

// benchRow is one path in one direction, measured through torided and through its peer.
type benchRow struct {
	path, peer      string
	download        bool
	toride, peerFig benchSample
}

type benchResults struct{ rows []benchRow }

func (r *benchResults) add(rows ...benchRow) { r.rows = append(r.rows, rows...) }

// markdown is the results file: when, on what, with which peers, then one table.
func (r *benchResults) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s (%d cores, Linux %s).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), cpuModel(), runtime.NumCPU(), firstLine("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(&b, "Peers and clients: %s; %s; %s; %s.\n\n", version("openvpn", "--version"), version("ocserv", "--version"),
		version("openconnect", "--version"), version("iperf3", "--version"))
	fmt.Fprintf(&b, "Each cell is the median of %d iperf3 TCP runs of 5 s, Toride's and the peer's alternating, client namespace ↔ LAN host behind the server (up: client → LAN). ", benchRounds())
	b.WriteString(
		"CPU: processor seconds per GB carried (10⁹ bytes), of the server (its process and the workers it forks) and of " +
			"the VPN client. Ratios are Toride ÷ peer: above 1 is better for throughput, below 1 is better for CPU.\n\n")
	b.WriteString("| path | dir | Toride Mbit/s | peer | peer Mbit/s | ratio | Toride server CPU s/GB | peer server CPU s/GB | ratio | client CPU s/GB (Toride / peer) |\n")
	b.WriteString("|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range r.rows {
		dir := map[bool]string{false: "up", true: "down"}[row.download]
		if row.peer == "" {
			fmt.Fprintf(&b, "| %s | %s | %.0f | | | | | | | |\n", row.path, dir, row.toride.mbps)
			continue
		}
		t, p := row.toride, row.peerFig
		if t.mbps == 0 && p.mbps == 0 {
			continue // not run (-bench chose other paths)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %.0f | %s | %.1f | %.1f | %s | %.1f / %.1f |\n", row.path, dir,
			t.mbps, row.peer, p.mbps, ratio(t.mbps, p.mbps), t.serverCPU, p.serverCPU, ratio(t.serverCPU, p.serverCPU), t.clientCPU, p.clientCPU)
	}
	return b.String()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func firstLine(path string) string {
	data, _ := os.ReadFile(path)
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(line)
}

// version is the first line a program prints about its version (ocserv and openconnect print it on stderr).
func version(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
