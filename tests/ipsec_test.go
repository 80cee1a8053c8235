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

	"toride/ike/awsconf"
	"toride/tests/cloudlab"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

// labFile is the cloud's configuration file for the lab's two gateways, in the Generic text or the XML format,
// made from the importer's own fixture so that it reads like the real thing.
func labFile(t *testing.T, format awsconf.Format, ikeVersion int) string {
	t.Helper()
	return labFileWith(t, format, ikeVersion, nil)
}

// labFileWith is labFile with each tunnel changed by edit (nil: none) before the file is written.
func labFileWith(t *testing.T, format awsconf.Format, ikeVersion int, edit func(*awsconf.Tunnel)) string {
	t.Helper()
	data, err := os.ReadFile("../ike/awsconf/testdata/generic-static-ikev1.txt")
	if err != nil {
		t.Fatal(err)
	}
	c, err := awsconf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	psks := []string{cloudlab.PSK1, cloudlab.PSK2}
	for i := range c.Tunnels {
		tn := &c.Tunnels[i]
		inside := netip.MustParsePrefix(cloudlab.GWInside[i])
		tn.CustomerGatewayOutside = netip.MustParseAddr(cloudlab.AppWAN)
		tn.VPNGatewayOutside = netip.MustParseAddr(cloudlab.GWOutside[i])
		tn.VPNGatewayInside = netip.PrefixFrom(inside.Addr().Next(), 30)
		tn.CustomerGatewayInside = netip.PrefixFrom(inside.Addr().Next().Next(), 30)
		tn.PreSharedKey = psks[i]
		tn.IKEVersion = ikeVersion
		tn.StaticNextHop = tn.VPNGatewayInside.Addr()
		if edit != nil {
			edit(tn)
		}
	}
	var out []byte
	if format == awsconf.FormatXML {
		if out, err = awsconf.MarshalXML(c); err != nil {
			t.Fatal(err)
		}
	} else {
		out = awsconf.MarshalGeneric(c)
	}
	path := filepath.Join(t.TempDir(), "vpn-config")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type ipsecStatus struct {
	Running   bool
	Backend   string
	Mode      string
	Charon    struct{ PID, Starts int }
	BGPRoutes []struct {
		Prefix   string
		Neighbor string
		Best     bool
	} `json:"bgp_routes"`
	BGPProblems []string `json:"bgp_problems"`
	Connections []struct {
		Name      string
		Failovers uint64
		Failbacks uint64
		Tunnels   []struct {
			Name      string
			Interface string
			ChildAlgs string `json:"child_algorithms"`
			BGP       *struct {
				State            string
				PrefixesReceived uint64 `json:"prefixes_received"`
				LocalPreference  uint32 `json:"local_preference"`
			}
			State     string
			Active    bool
			IKESA     string  `json:"ike_sa"`
			ChildSA   string  `json:"child_sa"`
			ProbeLoss float64 `json:"probe_loss"`
			Answered  bool    `json:"probe_answered"`
			BytesIn   uint64  `json:"bytes_in"`
			PktsOut   uint64  `json:"packets_out"`
		}
	}
}

func waitTunnels(t *testing.T, d *toridetest.Daemon, tp *cloudlab.Topo, what string, cond func(ipsecStatus) error) ipsecStatus {
	t.Helper()
	var st ipsecStatus
	err := lab.WaitFor(lab.Within(t, 60*time.Second), 100*time.Millisecond, func() error {
		st = ipsecStatus{}
		if err := d.API.Do(context.Background(), "GET", "/api/v1/ipsec/status", nil, &st); err != nil {
			return err
		}
		return cond(st)
	})
	if err != nil {
		tp.Diagnose(t)
		t.Fatalf("waiting for %s: %v (status %+v)", what, err, st)
	}
	return st
}

// packetsOut is each tunnel's packets-out counter, in tunnel order, for cloudlab.CarriedBy.
// maxFailoverGap bounds the LAN's traffic gap when the active gateway dies, with the default keepalive. The
// product's figure is about 1.5 s (the benchmarks give it); the bound leaves room for a loaded machine and still
// fails the probes of before (every 5 s, 3 lost: about 16 s).
const maxFailoverGap = 4 * time.Second

func packetsOut(st ipsecStatus) []uint64 {
	var o []uint64
	for _, tn := range st.Connections[0].Tunnels {
		o = append(o, tn.PktsOut)
	}
	return o
}

func bothTunnelsUp(st ipsecStatus) error {
	if len(st.Connections) != 1 || len(st.Connections[0].Tunnels) != 2 {
		return fmt.Errorf("want one connection with two tunnels: %+v", st)
	}
	for _, tn := range st.Connections[0].Tunnels {
		if tn.State != "up" {
			return fmt.Errorf("%s is %s (ike %s, child %s)", tn.Name, tn.State, tn.IKESA, tn.ChildSA)
		}
	}
	return nil
}

// importAndCommit imports the file through the console, tunes the probes for a quick test, commits, and returns
// the time from commit to both tunnels up and to the first LAN-to-LAN answer.
func importAndCommit(t *testing.T, d *toridetest.Daemon, tp *cloudlab.Topo, file string) (up, traffic time.Duration) {
	t.Helper()
	start := time.Now()
	up = importAndCommitTunnels(t, d, tp, file)
	tp.WaitPing(lab.Within(t, 30*time.Second), t)
	return up, time.Since(start)
}

// importAndCommitTunnels is importAndCommit up to both tunnels up, with no traffic yet.
func importAndCommitTunnels(t *testing.T, d *toridetest.Daemon, tp *cloudlab.Topo, file string) (up time.Duration) {
	t.Helper()
	return importAndCommitWith(t, d, tp, file, "--remote-networks", "10.2.0.0/24")
}

// importAndCommitWith is importAndCommitTunnels with other import options than the cloud's networks.
func importAndCommitWith(t *testing.T, d *toridetest.Daemon, tp *cloudlab.Topo, file string, opts ...string) (up time.Duration) {
	t.Helper()
	args := append([]string{"import", "aws-vpn", file, "--local-networks", "10.1.0.0/24", "--name", "aws"}, opts...)
	out := d.MustToride(args...)
	if !strings.Contains(out, "Imported 2 tunnel(s) as connection aws") || !strings.Contains(out, "pre-shared-key '****'") || strings.Contains(out, cloudlab.PSK1) {
		t.Fatalf("import said:\n%s", out)
	}
	for _, cmd := range [][]string{
		{"set", "system", "interfaces", "lan0", "address", "10.1.0.1/24"},
		{"set", "system", "interfaces", "wan0", "address", cloudlab.AppWAN + "/24"},
		{"set", "ipsec", "connections", "aws", "failover", "hold-down", "5"},
	} {
		d.MustToride(cmd...)
	}
	start := time.Now()
	d.MustToride("commit", "import", "the", "cloud's", "file")
	waitTunnels(t, d, tp, "both tunnels up", bothTunnelsUp)
	return time.Since(start)
}

// TestIPsecImportGenericIKEv2: the cloud's Generic file, imported through the console, brings up both tunnels to
// two real charon gateways; the LAN reaches the cloud LAN; `show ipsec` shows it; killing the active gateway's
// charon moves the traffic to the other tunnel.
func TestIPsecImportGenericIKEv2(t *testing.T) {
	tp := cloudlab.New(t, cloudlab.Options{})
	d := toridetest.Start(t, tp.App, t.TempDir())
	up, traffic := importAndCommit(t, d, tp, labFile(t, awsconf.FormatGeneric, 2))
	t.Logf("commit → both tunnels up %v, → first LAN-to-LAN answer %v", up.Round(time.Millisecond), traffic.Round(time.Millisecond))

	show := d.MustToride("show", "ipsec")
	for _, want := range []string{"aws", "tunnel1", "tunnel2", cloudlab.GWOutside[0], "ESTABLISHED", "INSTALLED", "up"} {
		if !strings.Contains(show, want) {
			t.Fatalf("show ipsec lacks %q:\n%s", want, show)
		}
	}

	// The gateway carrying traffic dies without a word (SIGKILL: no DELETE, no DPD answer), once its probes have
	// been answered (until then a silent probe target does not condemn a tunnel, and DPD decides).
	st := waitTunnels(t, d, tp, "an active tunnel with answered probes", func(st ipsecStatus) error {
		if err := bothTunnelsUp(st); err != nil {
			return err
		}
		for _, tn := range st.Connections[0].Tunnels {
			if tn.Active && tn.Answered {
				return nil
			}
		}
		return fmt.Errorf("no active tunnel with answered probes")
	})
	active := 0
	if st.Connections[0].Tunnels[1].Active {
		active = 1
	}
	pinger := tp.StartPinger(t)
	// The status' active flag is the truth (cloudlab.CarriedBy).
	sent := packetsOut
	waitTunnels(t, d, tp, "LAN traffic out over the active tunnel", func(now ipsecStatus) error {
		return cloudlab.CarriedBy(sent(st), sent(now), active)
	})
	killed := time.Now()
	tp.GWs[active].Proc.Kill()
	tp.RouteCloudVia(t, 1-active) // the cloud sends the return traffic over the surviving tunnel
	err := lab.WaitFor(lab.Within(t, 60*time.Second), 200*time.Millisecond, func() error {
		if _, resumed := pinger.GapAround(killed); !resumed {
			return fmt.Errorf("LAN traffic has not resumed")
		}
		return nil
	})
	if err != nil {
		tp.Diagnose(t)
		t.Fatalf("after the active gateway died: %v", err)
	}
	gap, _ := pinger.GapAround(killed)
	t.Logf("traffic gap after the active gateway died: %v", gap.Round(100*time.Millisecond))
	if gap > maxFailoverGap {
		t.Errorf("traffic gap %v, want under %v with the default probes (every 0.2 s, 3 lost)", gap, maxFailoverGap)
	}
	waitTunnels(t, d, tp, "a failover counted", func(st ipsecStatus) error {
		if st.Connections[0].Failovers == 0 || !st.Connections[0].Tunnels[1-active].Active {
			return fmt.Errorf("no failover yet")
		}
		return nil
	})
}

// TestIPsecImportXMLIKEv1: the XML vpn_connection format (read as IKEv1 main mode) works the same way.
func TestIPsecImportXMLIKEv1(t *testing.T) {
	tp := cloudlab.New(t, cloudlab.Options{})
	d := toridetest.Start(t, tp.App, t.TempDir())
	up, traffic := importAndCommit(t, d, tp, labFile(t, awsconf.FormatXML, 1))
	t.Logf("IKEv1: commit → both tunnels up %v, → first LAN-to-LAN answer %v", up.Round(time.Millisecond), traffic.Round(time.Millisecond))
	var cfg struct {
		IPsec struct {
			Connections map[string]struct {
				Tunnels map[string]struct {
					IKEVersion int `json:"ike-version"`
				}
			}
		} `json:"ipsec"`
	}
	if err := d.API.Do(context.Background(), "GET", "/api/v1/config", nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if v := cfg.IPsec.Connections["aws"].Tunnels["tunnel1"].IKEVersion; v != 1 {
		t.Fatalf("the XML import set ike-version %d, want 1", v)
	}
}

// TestIPsecImportErrors: files that are not the cloud's configuration get errors naming the line or element.
func TestIPsecImportErrors(t *testing.T) {
	l := lab.New(t, "unshare")
	d := toridetest.Start(t, l.Namespace("box"), t.TempDir())
	dir := t.TempDir()
	generic, err := os.ReadFile("../ike/awsconf/testdata/generic-static-ikev1.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, body, want string }{
		{"garbage", "\x00\x01 not a configuration at all", "error:"},
		{"truncated", string(generic[:len(generic)/3]), "line"},
		{"html", "<html><body>Sign in</body></html>", "error:"},
	} {
		path := filepath.Join(dir, tt.name)
		os.WriteFile(path, []byte(tt.body), 0o600)
		_, err := d.Toride("import", "aws-vpn", path, "--remote-networks", "10.2.0.0/24")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: import = %v, want an error mentioning %q", tt.name, err, tt.want)
		}
	}
	if out := d.MustToride("compare"); !strings.Contains(out, "No changes") {
		t.Fatalf("a failed import changed the candidate:\n%s", out)
	}
}
