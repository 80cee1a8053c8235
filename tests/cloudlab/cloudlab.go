// Package cloudlab builds the far side of a cloud VPN connection for tests: two "cloud gateway" namespaces, each
// running its own strongSwan charon configured as the cloud configures its endpoints (responder only, any traffic
// selectors, PSK, optional inactivity timeout), a cloud LAN behind both gateways, the "internet" between them and
// the appliance, and a site LAN behind the appliance; optionally a masquerading NAT in front of the appliance.
//
//	site 10.1.0.10 ── lan0 10.1.0.1 [app] wan0 198.51.100.2 ── inet ── 203.0.113.2 gw1 ─┐ 10.2.0.1
//	                                   [or behind a NAT]           └── 203.0.113.6 gw2 ─┤ 10.2.0.2
//	                                                                          br0 10.2.0.10 cloud
//
// The appliance namespace (App) is the test's to fill: the IPsec engine alone, or a whole torided.
package cloudlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"toride/ike/charon"
	"toride/tests/lab"
)

// The lab's addresses and keys.
const (
	SiteHost   = "10.1.0.10"
	CloudHost  = "10.2.0.10"
	AppWAN     = "198.51.100.2"
	PSK1       = "Lab.psk_tunnel1_x7Q"
	PSK2       = "Lab.psk_tunnel2_k3Z"
	gwProposal = "aes128-aes256-sha1-sha256-modp2048-modp1024,aes128gcm16-aes256gcm16-prfsha256-prfsha1-modp2048-modp1024"
	gwESP      = "aes128-aes256-sha1-sha256-modp2048-modp1024,aes128gcm16-aes256gcm16-modp2048-modp1024"
)

// GWOutside and GWInside are the gateways' outside addresses and their tunnels' inside /30s.
var (
	GWOutside = [2]string{"203.0.113.2", "203.0.113.6"}
	GWInside  = [2]string{"169.254.10.0/30", "169.254.11.0/30"}
)

// Options shape the lab.
type Options struct {
	BehindNAT  bool          // the appliance's WAN is 192.168.100.2 behind a masquerading router
	Inactivity time.Duration // the gateways close idle CHILD_SAs after this (0: never)
	// BGP runs FRR's bgpd beside each gateway's charon, as the cloud does for dynamic routing: ASN CloudASN,
	// a session with the appliance's inside address (ASN SiteASN) over the tunnel, announcing the cloud LAN.
	BGP bool
}

// Topo is one lab.
type Topo struct {
	Lab     *lab.Lab
	Site    *lab.Netns
	App     *lab.Netns
	Inet    *lab.Netns
	NAT     *lab.Netns
	GW      [2]*lab.Netns
	Cloud   *lab.Netns
	GWs     [2]*Gateway
	BGPs    [2]*BGPSpeaker // with Options.BGP
	LocalIP string         // the appliance's own WAN address
	CGWID   string         // the address the cloud sees the appliance as (its IKE identity)
}

// New builds the lab and starts both gateways. It skips (or, under lab.Required, fails) without strongSwan.
func New(t testing.TB, o Options) *Topo {
	t.Helper()
	if _, err := os.Stat(charon.DefaultBinary); err != nil {
		if lab.Required() {
			t.Fatal("strongswan-charon is not installed")
		}
		t.Skip("strongswan-charon is not installed")
	}
	l := lab.New(t, "swanctl", "nft", "unshare", "sysctl")
	tp := &Topo{Lab: l, LocalIP: AppWAN, CGWID: AppWAN}
	tp.Site = l.Namespace("site")
	tp.App = l.Namespace("app")
	tp.Inet = l.Namespace("inet")
	tp.GW[0] = l.Namespace("gw1")
	tp.GW[1] = l.Namespace("gw2")
	tp.Cloud = l.Namespace("cloud")

	l.Link(tp.Site, "eth0", SiteHost+"/24", tp.App, "lan0", "10.1.0.1/24")
	tp.Site.AddRoute("default", "10.1.0.1")
	if o.BehindNAT {
		tp.NAT = l.Namespace("nat")
		tp.LocalIP = "192.168.100.2"
		l.Link(tp.App, "wan0", tp.LocalIP+"/24", tp.NAT, "lan0", "192.168.100.1/24")
		tp.App.AddRoute("default", "192.168.100.1")
		l.Link(tp.NAT, "wan0", AppWAN+"/24", tp.Inet, "a0", "198.51.100.1/24")
		tp.NAT.AddRoute("default", "198.51.100.1")
		EnableForwarding(tp.NAT)
		tp.NAT.MustRun("nft", "add table ip nat")
		tp.NAT.MustRun("nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }")
		tp.NAT.MustRun("nft", "add rule ip nat post oifname wan0 masquerade")
	} else {
		l.Link(tp.App, "wan0", AppWAN+"/24", tp.Inet, "a0", "198.51.100.1/24")
		tp.App.AddRoute("default", "198.51.100.1")
	}
	EnableForwarding(tp.App)
	EnableForwarding(tp.Inet)
	for i, gw := range tp.GW {
		inetSide := netip.MustParseAddr(GWOutside[i]).Prev()
		l.Link(tp.Inet, fmt.Sprintf("g%d", i+1), inetSide.String()+"/30", gw, "wan0", GWOutside[i]+"/30")
		gw.AddRoute("default", inetSide.String())
		EnableForwarding(gw)
		// The cloud takes the first host address of the inside /30.
		far := netip.MustParsePrefix(GWInside[i]).Addr().Next()
		gw.AddAddr("lo", far.String()+"/32")
		// The cloud's own LAN is reached directly, before charon's table 220: when the appliance negotiates
		// 0.0.0.0/0 (route-based tunnels), kernel-libipsec routes everything into its tunnel there, the cloud
		// LAN included, and traffic from the tunnel would go straight back into it.
		gw.MustRun("ip", "rule", "add", "to", "10.2.0.0/24", "lookup", "main", "priority", "100")
	}
	// The cloud LAN: a bridge joining both gateways and the cloud host.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := tp.Cloud.Handle().LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	for i, gw := range tp.GW {
		port := fmt.Sprintf("p%d", i+1)
		l.Link(gw, "lan0", fmt.Sprintf("10.2.0.%d/24", i+1), tp.Cloud, port, "")
		link, err := tp.Cloud.Handle().LinkByName(port)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Cloud.Handle().LinkSetMaster(link, br); err != nil {
			t.Fatal(err)
		}
	}
	tp.Cloud.AddAddr("br0", CloudHost+"/24")
	tp.Cloud.LinkUp("br0")
	tp.Cloud.AddRoute("10.1.0.0/24", "10.2.0.1")
	for i := range tp.GW {
		tp.GWs[i] = startGateway(t, tp.GW[i], i, tp.CGWID, o.Inactivity)
	}
	if o.BGP {
		for i := range tp.GW {
			tp.BGPs[i] = startBGP(t, tp.GW[i], i)
		}
	}
	return tp
}

// EnableForwarding turns on IPv4 forwarding in a namespace with sysctl (a process in the namespace: no thread
// of the test binary enters it).
func EnableForwarding(n *lab.Netns) { n.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1") }

// Diagnose prints the lab's network state after a failure.
func (tp *Topo) Diagnose(t testing.TB) {
	var b strings.Builder
	for _, n := range []*lab.Netns{tp.App, tp.Inet, tp.GW[0], tp.GW[1], tp.Cloud} {
		fmt.Fprintf(&b, "==== %s\n", n.Name)
		for _, args := range [][]string{
			{"ip", "-br", "addr"}, {"ip", "route"}, {"ip", "route", "show", "table", "220"}, {"ip", "rule"},
			{"sysctl", "net.ipv4.ip_forward"}, {"nft", "list", "ruleset"},
			{"ip", "-s", "xfrm", "state"}, {"ip", "-s", "xfrm", "policy"}, {"cat", "/proc/net/xfrm_stat"},
		} {
			out, err := n.Run(args[0], args[1:]...)
			fmt.Fprintf(&b, "$ %s (%v)\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ip := range GWOutside {
		out, err := tp.App.Run("ping", "-n", "-c", "1", "-W", "1", ip)
		fmt.Fprintf(&b, "app → %s: %v\n%s", ip, err, out)
	}
	t.Logf("---- lab diagnosis ----\n%s", b.String())
}

// RouteCloudVia points the cloud's return route to the site at gateway i, as the cloud does when a tunnel goes
// down.
func (tp *Topo) RouteCloudVia(t testing.TB, i int) {
	t.Helper()
	_, dst, _ := net.ParseCIDR("10.1.0.0/24")
	r := &netlink.Route{Dst: dst, Gw: net.ParseIP(fmt.Sprintf("10.2.0.%d", i+1))}
	if err := tp.Cloud.Handle().RouteReplace(r); err != nil {
		t.Fatal(err)
	}
}

// PingOnce sends one echo request from the site LAN host to the cloud host.
func (tp *Topo) PingOnce() bool {
	_, err := tp.Site.Run("ping", "-n", "-q", "-c", "1", "-W", "1", CloudHost)
	return err == nil
}

// WaitPing waits until the site host reaches the cloud host.
func (tp *Topo) WaitPing(ctx context.Context, t testing.TB) {
	t.Helper()
	if err := lab.WaitFor(ctx, 100*time.Millisecond, func() error {
		if tp.PingOnce() {
			return nil
		}
		return fmt.Errorf("no answer from %s", CloudHost)
	}); err != nil {
		tp.Diagnose(t)
		t.Fatal(err)
	}
}

// Gateway is one far-side gateway: a charon of its own, configured with swanctl (tests may; the product may not).
type Gateway struct {
	NS   *lab.Netns
	Dir  string
	Proc *lab.Process
}

// Socket is the gateway charon's VICI socket.
func (g *Gateway) Socket() string { return filepath.Join(g.Dir, "charon.vici") }

func startGateway(t testing.TB, ns *lab.Netns, i int, cgwID string, inactivity time.Duration) *Gateway {
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
	psk := PSK1
	if i == 1 {
		psk = PSK2
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
`, GWOutside[i], gwProposal, cgwID, gwESP, inact, psk)
	if err := os.WriteFile(filepath.Join(dir, "swanctl.conf"), []byte(swanctl), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{NS: ns, Dir: dir}
	g.Start(t)
	return g
}

// Start (re)starts the gateway's charon and loads its configuration.
func (g *Gateway) Start(t testing.TB) {
	t.Helper()
	os.Remove(filepath.Join(g.Dir, "charon.pid"))
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount --bind "+g.Dir+" /run && exec "+charon.DefaultBinary)
	cmd.Env = []string{"STRONGSWAN_CONF=/run/strongswan.conf", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	g.Proc = g.NS.StartCmd(cmd)
	ctx := lab.Within(t, 20*time.Second)
	var out []byte
	// The socket appears before charon is fully up: wait for a successful command, not for the file.
	if err := lab.WaitFor(ctx, 100*time.Millisecond, func() error {
		if done, err := g.Proc.Exited(); done {
			return lab.Permanent(fmt.Errorf("gateway charon exited: %v", err))
		}
		var err error
		out, err = exec.CommandContext(ctx, "swanctl", "--load-all", "--noprompt", "--file", filepath.Join(g.Dir, "swanctl.conf"),
			"--uri", "unix://"+g.Socket()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "successfully loaded 1 connections") {
			return fmt.Errorf("swanctl --load-all: %v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("gateway charon in %s: %v\n%s", g.NS.Name, err, g.Proc.Output())
	}
}

// Pinger pings the cloud host from the site LAN every 50 ms and records when answers arrive.
type Pinger struct {
	proc *lab.Process
}

// StartPinger starts pinging.
func (tp *Topo) StartPinger(t testing.TB) *Pinger {
	t.Helper()
	return &Pinger{proc: tp.Site.Start("ping", "-n", "-D", "-i", "0.05", "-W", "1", CloudHost)}
}

var pingReply = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from`)

// Replies returns the arrival times of all answers so far.
func (p *Pinger) Replies() []time.Time {
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

// CarriedBy judges, from two readings of each tunnel's packets-out counter (start and now, tunnel order),
// whether the site LAN's traffic (the Pinger's 20 packets a second) went out over tunnel want and not over the
// other: the status' active flag must be the truth, not the engine's belief. Each tunnel also sends its probes
// (5 a second by default) on its own SA, which the counts include. Too little traffic yet is a plain error (wait on); traffic
// over the other tunnel is a permanent one.
func CarriedBy(start, now []uint64, want int) error {
	carried, other := now[want]-start[want], now[1-want]-start[1-want]
	if carried < 15 {
		return fmt.Errorf("only %d packets out over tunnel %d (%d over the other) so far", carried, want+1, other)
	}
	if other > carried/3 {
		return lab.Permanent(fmt.Errorf("the status calls tunnel %d active, but tunnel %d sent %d packets while it sent %d",
			want+1, 2-want, other, carried))
	}
	return nil
}

// LongestSilence returns the longest time without an answer between from and to, the ends count as
// answers (traffic that never stops gives the pinger's own spacing).
func (p *Pinger) LongestSilence(from, to time.Time) time.Duration {
	longest, last := time.Duration(0), from
	for _, r := range p.Replies() {
		if r.Before(from) || r.After(to) {
			continue
		}
		longest, last = max(longest, r.Sub(last)), r
	}
	return max(longest, to.Sub(last))
}

// GapAround returns the longest silence between answers from the last answer before t0 until answers flow
// steadily again, and whether they do.
func (p *Pinger) GapAround(t0 time.Time) (time.Duration, bool) {
	return gapAround(p.Replies(), t0, time.Now())
}

// Answers flow again once resumeRun answers in a row, all after t0, come at most resumeSpacing apart and the
// newest is no older than resumeSpacing. A single answer just after t0 proves nothing: it may be one that was
// already in flight when the tunnel was cut, and taking it for the end of the outage hides the whole gap.
const (
	resumeRun     = 5
	resumeSpacing = 300 * time.Millisecond
)

// gapAround is GapAround over answer times rs (in arrival order) at the time now.
func gapAround(rs []time.Time, t0, now time.Time) (time.Duration, bool) {
	first := 0 // the last answer before t0, or the first answer at all
	for i, r := range rs {
		if r.Before(t0) {
			first = i
		}
	}
	rs = rs[first:]
	if len(rs) == 0 {
		return 0, false
	}
	// The steady run at the end, counted back from the newest answer.
	run := 1
	for i := len(rs) - 1; i > 0 && rs[i].Sub(rs[i-1]) <= resumeSpacing && !rs[i-1].Before(t0); i-- {
		run++
	}
	resumed := run >= resumeRun && !rs[len(rs)-run].Before(t0) && now.Sub(rs[len(rs)-1]) <= resumeSpacing
	var gap time.Duration
	end := len(rs)
	if resumed {
		end = len(rs) - run + 1 // the run's first answer closes the outage; silences inside the run are not part of it
	}
	for i := 1; i < end; i++ {
		gap = max(gap, rs[i].Sub(rs[i-1]))
	}
	if !resumed {
		gap = max(gap, now.Sub(rs[len(rs)-1]))
	}
	return gap, resumed
}
