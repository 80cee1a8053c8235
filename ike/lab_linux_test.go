package ike

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"toride/ike/charon"
	"toride/ike/internal/vici"
	"toride/tests/lab"
)

// The lab: a site LAN behind the appliance, the "internet", two cloud gateways (each its own charon, configured
// as the cloud configures its endpoints: responder only, any traffic selectors, PSK, optional inactivity timeout)
// and a cloud LAN behind both gateways.
//
//	sitelan 10.1.0.10 ── lan0 10.1.0.1  appliance  wan0 198.51.100.2 ── inet ── 203.0.113.2 gw1 ─┐ 10.2.0.1
//	                                    (Service)   [or behind a NAT]       └── 203.0.113.6 gw2 ─┤ 10.2.0.2
//	                                                                                        br0 10.2.0.10 cloud
const (
	siteHost   = "10.1.0.10"
	cloudHost  = "10.2.0.10"
	appWAN     = "198.51.100.2"
	labPSK1    = "Lab.psk_tunnel1_x7Q"
	labPSK2    = "Lab.psk_tunnel2_k3Z"
	gwProposal = "aes128-aes256-sha1-sha256-modp2048-modp1024,aes128gcm16-aes256gcm16-prfsha256-prfsha1-modp2048-modp1024"
	gwESP      = "aes128-aes256-sha1-sha256-modp2048-modp1024,aes128gcm16-aes256gcm16-modp2048-modp1024"
)

var gwOutside = [2]string{"203.0.113.2", "203.0.113.6"}
var gwInside = [2]string{"169.254.10.0/30", "169.254.11.0/30"}

type labOpts struct {
	behindNAT  bool          // the appliance's WAN is 192.168.100.2 behind a masquerading router
	inactivity time.Duration // the gateways close idle CHILD_SAs after this (0: never)
}

type topo struct {
	l       *lab.Lab
	site    *lab.Netns
	app     *lab.Netns
	inet    *lab.Netns
	nat     *lab.Netns
	gw      [2]*lab.Netns
	cloud   *lab.Netns
	gws     [2]*cloudGW
	localIP string // the appliance's own WAN address
	cgwID   string // the address the cloud sees the appliance as
}

func newTopo(t testing.TB, o labOpts) *topo {
	t.Helper()
	if _, err := os.Stat(charon.DefaultBinary); err != nil {
		if lab.Required() {
			t.Fatal("strongswan-charon is not installed")
		}
		t.Skip("strongswan-charon is not installed")
	}
	l := lab.New(t, "swanctl", "nft", "unshare")
	tp := &topo{l: l, localIP: appWAN, cgwID: appWAN}
	tp.site = l.Namespace("site")
	tp.app = l.Namespace("app")
	tp.inet = l.Namespace("inet")
	tp.gw[0] = l.Namespace("gw1")
	tp.gw[1] = l.Namespace("gw2")
	tp.cloud = l.Namespace("cloud")

	l.Link(tp.site, "eth0", siteHost+"/24", tp.app, "lan0", "10.1.0.1/24")
	tp.site.AddRoute("default", "10.1.0.1")
	if o.behindNAT {
		tp.nat = l.Namespace("nat")
		tp.localIP = "192.168.100.2"
		l.Link(tp.app, "wan0", tp.localIP+"/24", tp.nat, "lan0", "192.168.100.1/24")
		tp.app.AddRoute("default", "192.168.100.1")
		l.Link(tp.nat, "wan0", appWAN+"/24", tp.inet, "a0", "198.51.100.1/24")
		tp.nat.AddRoute("default", "198.51.100.1")
		enableForwarding(tp.nat)
		tp.nat.MustRun("nft", "add table ip nat")
		tp.nat.MustRun("nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }")
		tp.nat.MustRun("nft", "add rule ip nat post oifname wan0 masquerade")
	} else {
		l.Link(tp.app, "wan0", appWAN+"/24", tp.inet, "a0", "198.51.100.1/24")
		tp.app.AddRoute("default", "198.51.100.1")
	}
	enableForwarding(tp.app)
	enableForwarding(tp.inet)
	for i, gw := range tp.gw {
		inetSide := netip.MustParseAddr(gwOutside[i]).Prev()
		l.Link(tp.inet, fmt.Sprintf("g%d", i+1), inetSide.String()+"/30", gw, "wan0", gwOutside[i]+"/30")
		gw.AddRoute("default", inetSide.String())
		enableForwarding(gw)
		_, far, _ := Tunnel{InsideCIDR: netip.MustParsePrefix(gwInside[i])}.InsideAddresses()
		gw.AddAddr("lo", far.String()+"/32")
	}
	// The cloud LAN: a bridge joining both gateways and the cloud host.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := tp.cloud.Handle().LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	for i, gw := range tp.gw {
		port := fmt.Sprintf("p%d", i+1)
		l.Link(gw, "lan0", fmt.Sprintf("10.2.0.%d/24", i+1), tp.cloud, port, "")
		link, err := tp.cloud.Handle().LinkByName(port)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.cloud.Handle().LinkSetMaster(link, br); err != nil {
			t.Fatal(err)
		}
	}
	tp.cloud.AddAddr("br0", cloudHost+"/24")
	tp.cloud.LinkUp("br0")
	tp.cloud.AddRoute("10.1.0.0/24", "10.2.0.1")
	for i := range tp.gw {
		tp.gws[i] = startCloudGW(t, tp.gw[i], i, tp.cgwID, o.inactivity)
	}
	return tp
}

// diagnose prints the lab's network state after a failure.
func (tp *topo) diagnose(t testing.TB) {
	var b strings.Builder
	for _, n := range []*lab.Netns{tp.app, tp.inet, tp.gw[0], tp.gw[1], tp.cloud} {
		fmt.Fprintf(&b, "==== %s\n", n.Name)
		for _, args := range [][]string{
			{"ip", "-br", "addr"}, {"ip", "route"}, {"ip", "route", "show", "table", "220"}, {"ip", "rule"},
			{"sysctl", "net.ipv4.ip_forward"}, {"nft", "list", "ruleset"},
		} {
			out, err := n.Run(args[0], args[1:]...)
			fmt.Fprintf(&b, "$ %s (%v)\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ip := range gwOutside {
		out, err := tp.app.Run("ping", "-n", "-c", "1", "-W", "1", ip)
		fmt.Fprintf(&b, "app → %s: %v\n%s", ip, err, out)
	}
	for i, g := range tp.gws {
		pid := g.proc.Pid()
		out, _ := exec.Command("sh", "-c", fmt.Sprintf(
			"stat -Lc '%%i netns-file' /run/netns/%s; for t in /proc/%d/task/*; do stat -Lc \"%%i $t\" $t/ns/net; done; ip netns identify %d; ss -uanp | grep charon",
			g.ns.Name, pid, pid)).CombinedOutput()
		fmt.Fprintf(&b, "==== gw%d charon pid %d\n%s", i+1, pid, out)
	}
	t.Logf("---- lab diagnosis ----\n%s", b.String())
}

// routeCloudVia points the cloud's return route to the site at gateway i, as the cloud does when a tunnel goes
// down.
func (tp *topo) routeCloudVia(t testing.TB, i int) {
	t.Helper()
	_, dst, _ := net.ParseCIDR("10.1.0.0/24")
	r := &netlink.Route{Dst: dst, Gw: net.ParseIP(fmt.Sprintf("10.2.0.%d", i+1))}
	if err := tp.cloud.Handle().RouteReplace(r); err != nil {
		t.Fatal(err)
	}
}

// cloudGW is one far-side gateway: a charon of its own, configured with swanctl (tests may; the product may not).
type cloudGW struct {
	ns   *lab.Netns
	dir  string
	proc *lab.Process
}

func (g *cloudGW) socket() string { return filepath.Join(g.dir, "charon.vici") }

func startCloudGW(t testing.TB, ns *lab.Netns, i int, cgwID string, inactivity time.Duration) *cloudGW {
	t.Helper()
	dir, err := os.MkdirTemp("", "toride-gw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := charon.Conf(charon.ConfOptions{Backend: charon.BackendLibipsec, Socket: "/run/charon.vici", LogLevel: 1})
	if err := os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	psk := labPSK1
	if i == 1 {
		psk = labPSK2
	}
	inact := ""
	if inactivity > 0 {
		inact = fmt.Sprintf("inactivity = %ds", int(inactivity.Seconds()))
	}
	swanctl := fmt.Sprintf(`connections {
  cloud {
    version = 0
    local_addrs = %[1]s
    remote_addrs = %%any
    proposals = %[2]s
    dpd_delay = 10s
    local {
      auth = psk
      id = %[1]s
    }
    remote {
      auth = psk
      id = %[3]s
    }
    children {
      cloud {
        local_ts = 0.0.0.0/0
        remote_ts = 0.0.0.0/0
        esp_proposals = %[4]s
        start_action = none
        close_action = none
        dpd_action = clear
        %[5]s
      }
    }
  }
}
secrets {
  ike-cloud {
    id-1 = %[3]s
    secret = "%[6]s"
  }
}
`, gwOutside[i], gwProposal, cgwID, gwESP, inact, psk)
	if err := os.WriteFile(filepath.Join(dir, "swanctl.conf"), []byte(swanctl), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &cloudGW{ns: ns, dir: dir}
	g.start(t)
	return g
}

func (g *cloudGW) start(t testing.TB) {
	t.Helper()
	os.Remove(filepath.Join(g.dir, "charon.pid"))
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount --bind "+g.dir+" /run && exec "+charon.DefaultBinary)
	cmd.Env = []string{"STRONGSWAN_CONF=/run/strongswan.conf", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	g.proc = g.ns.StartCmd(cmd)
	ctx := lab.Within(t, 20*time.Second)
	if err := lab.WaitFor(ctx, 100*time.Millisecond, func() error {
		if done, err := g.proc.Exited(); done {
			return lab.Permanent(fmt.Errorf("gateway charon exited: %v", err))
		}
		c, err := vici.Dial(ctx, g.socket())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Version(ctx)
		return err
	}); err != nil {
		t.Fatalf("gateway charon in %s: %v\n%s", g.ns.Name, err, g.proc.Output())
	}
	out, err := exec.Command("swanctl", "--load-all", "--noprompt", "--file", filepath.Join(g.dir, "swanctl.conf"),
		"--uri", "unix://"+g.socket()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "successfully loaded 1 connections") {
		t.Fatalf("swanctl --load-all: %v\n%s", err, out)
	}
}

// sas lists the gateway's SAs.
func (g *cloudGW) sas(ctx context.Context) ([]vici.IKESA, error) {
	c, err := vici.Dial(ctx, g.socket())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ListSAs(ctx)
}

// syncBuffer collects the engine's log for the test output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startService starts the engine in the appliance namespace.
func (tp *topo) startService(t testing.TB, extra func(*Opts)) *Service {
	t.Helper()
	dir, err := os.MkdirTemp("", "toride-ike-")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := Opts{
		RunDir:         dir,
		NetnsPath:      "/run/netns/" + tp.app.Name,
		ResyncInterval: time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if extra != nil {
		extra(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- engine log ----\n%s---- appliance charon log ----\n%s", logs.String(), s.CharonLog())
		}
		s.Close()
		os.RemoveAll(dir)
	})
	return s
}

// labConfig is the appliance's configuration for the lab's two tunnels.
func (tp *topo) labConfig(version int) Config {
	local := netip.MustParseAddr(tp.localIP)
	c := Connection{
		Name:           "aws",
		LocalNetworks:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
		RemoteNetworks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
		Keepalive:      Keepalive{Interval: time.Second, Timeout: 500 * time.Millisecond, DownAfter: 3},
		Failover:       Failover{HoldDown: 5 * time.Second},
	}
	for i := range 2 {
		psk := labPSK1
		if i == 1 {
			psk = labPSK2
		}
		c.Tunnels = append(c.Tunnels, Tunnel{
			LocalAddress:  local,
			LocalID:       tp.cgwID,
			RemoteAddress: netip.MustParseAddr(gwOutside[i]),
			PSK:           psk,
			InsideCIDR:    netip.MustParsePrefix(gwInside[i]),
			IKEVersion:    version,
			Phase1:        Phase{Encryption: []Encryption{AES128}, Integrity: []Integrity{SHA2256}, DHGroups: []int{14}},
			Phase2:        Phase{Encryption: []Encryption{AES128}, Integrity: []Integrity{SHA2256}, DHGroups: []int{14}},
		})
	}
	return Config{Connections: []Connection{c}}
}

// waitStatus waits until cond holds for the first connection's status; on timeout it prints the lab's state
// (while everything still runs) and fails.
func (tp *topo) waitStatus(ctx context.Context, t testing.TB, s *Service, what string, cond func(ConnectionStatus) error) ConnectionStatus {
	t.Helper()
	var cs ConnectionStatus
	err := lab.WaitFor(ctx, 100*time.Millisecond, func() error {
		st := s.Status()
		if len(st.Connections) == 0 {
			return fmt.Errorf("no connections in status (last error %q)", st.LastError)
		}
		cs = st.Connections[0]
		return cond(cs)
	})
	if err != nil {
		tp.diagnose(t)
		t.Fatalf("waiting for %s: %v\nstatus: %+v", what, err, s.Status())
	}
	return cs
}

func bothUp(cs ConnectionStatus) error {
	for _, tn := range cs.Tunnels {
		if tn.State != "up" {
			return fmt.Errorf("%s is %s (ike %s, child %s, loss %.2f)", tn.Name, tn.State, tn.IKESA, tn.ChildSA, tn.ProbeLoss)
		}
	}
	if cs.ActiveTunnel < 0 {
		return fmt.Errorf("no active tunnel")
	}
	return nil
}

// pingOnce sends one echo request from the site LAN host to the cloud host.
func (tp *topo) pingOnce() bool {
	_, err := tp.site.Run("ping", "-n", "-q", "-c", "1", "-W", "1", cloudHost)
	return err == nil
}

func (tp *topo) waitPing(ctx context.Context, t testing.TB) {
	t.Helper()
	if err := lab.WaitFor(ctx, 100*time.Millisecond, func() error {
		if tp.pingOnce() {
			return nil
		}
		return fmt.Errorf("no answer from %s", cloudHost)
	}); err != nil {
		t.Fatal(err)
	}
}

// dialEngineCharon opens a VICI session to the engine's charon, for inspection.
func dialEngineCharon(t testing.TB, ctx context.Context, s *Service) *vici.Client {
	t.Helper()
	c, err := vici.Dial(ctx, s.sup.Socket())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enableForwarding turns on IPv4 forwarding with sysctl in the namespace. lab.Netns.EnableForwarding uses
// lab's Do, which may lock the test binary's main thread into the namespace for good; the lab's cleanup then
// finds the test binary among the namespace's processes and kills it.
func enableForwarding(n *lab.Netns) { n.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1") }

func upOnPreferred(cs ConnectionStatus) error {
	if err := bothUp(cs); err != nil {
		return err
	}
	if cs.ActiveTunnel != 0 {
		return fmt.Errorf("active tunnel %d, want the preferred 0", cs.ActiveTunnel)
	}
	return nil
}

// pinger pings the cloud host from the site LAN every 100 ms and records when answers arrive.
type pinger struct {
	proc *lab.Process
}

func (tp *topo) startPinger(t testing.TB) *pinger {
	t.Helper()
	return &pinger{proc: tp.site.Start("ping", "-n", "-D", "-i", "0.1", "-W", "1", cloudHost)}
}

var pingReply = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from`)

// replies returns the arrival times of all answers so far.
func (p *pinger) replies() []time.Time {
	var out []time.Time
	for _, line := range strings.Split(p.proc.Output(), "\n") {
		m := pingReply.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		frac, _ := strconv.ParseFloat("0."+m[2], 64)
		out = append(out, time.Unix(sec, int64(frac*1e9)))
	}
	return out
}

// gapAround returns the longest silence between answers that spans t0, and whether answers resumed after it.
func (p *pinger) gapAround(t0 time.Time) (time.Duration, bool) {
	rs := p.replies()
	last := time.Time{}
	for _, r := range rs {
		if r.Before(t0) {
			last = r
			continue
		}
		if last.IsZero() {
			return 0, true
		}
		return r.Sub(last), true
	}
	if last.IsZero() {
		return 0, false
	}
	return time.Since(last), false
}
