package bgp_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"toride/ike/bgp"
	"toride/ike/bgp/bgptest"
	"toride/tests/lab"
)

const frrDir = "/usr/lib/frr"

// frr is FRR's zebra and bgpd in a namespace, standing for the cloud's two gateways' BGP speakers.
type frr struct {
	dir string
	ns  *lab.Netns
}

// The two tunnels' inside /30s: the cloud's side .1, ours .2.
var (
	labOur1, labCloud1 = netip.MustParseAddr("169.254.10.2"), netip.MustParseAddr("169.254.10.1")
	labOur2, labCloud2 = netip.MustParseAddr("169.254.11.2"), netip.MustParseAddr("169.254.11.1")
)

const labPassword = "toride-md5-key"

func startFRR(t *testing.T, ns *lab.Netns) *frr {
	t.Helper()
	for _, d := range []string{"zebra", "bgpd"} {
		if _, err := os.Stat(filepath.Join(frrDir, d)); err != nil {
			if lab.Required() {
				t.Fatalf("FRR's %s is missing (install the frr package: tests/deps.sh test)", d)
			}
			t.Skipf("FRR's %s is missing (install the frr package: tests/deps.sh test)", d)
		}
	}
	// The daemons run as user frr: their directory is theirs, outside the test's private temporary directory.
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatalf("FRR's user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "toride-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &frr{dir: dir, ns: ns}
	conf := fmt.Sprintf(`frr defaults traditional
hostname cloud
log stdout informational
!
router bgp %[1]d
 bgp router-id %[2]s
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor %[3]s remote-as %[5]d
 neighbor %[3]s password %[6]s
 neighbor %[3]s timers 3 9
 neighbor %[3]s timers connect 2
 neighbor %[4]s remote-as %[5]d
 neighbor %[4]s timers 3 9
 neighbor %[4]s timers connect 2
 address-family ipv4 unicast
  network %[7]s
 exit-address-family
!
`, cloudASN, labCloud1, labOur1, labOur2, ourASN, labPassword, cloudNet)
	if err := os.WriteFile(filepath.Join(f.dir, "frr.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "zebra.conf"), []byte("hostname cloud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "frr.conf", "zebra.conf", "run"} {
		if err := os.Chown(filepath.Join(f.dir, name), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	// Each daemon gets a private /run, so nothing of theirs lands in the host's.
	for _, d := range []string{"zebra", "bgpd"} {
		conf := "frr.conf"
		if d == "zebra" {
			conf = "zebra.conf"
		}
		args := fmt.Sprintf("%s/%s -P 0 -f %s/%s -i %s/%s.pid -z %s/zserv.api --vty_socket %s",
			frrDir, d, f.dir, conf, f.dir, d, f.dir, f.dir)
		cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
			"mount --bind "+f.dir+"/run /run && exec "+args)
		ns.StartCmd(cmd)
		if d == "zebra" {
			if err := lab.WaitFor(lab.Within(t, 20*time.Second), 100*time.Millisecond, func() error {
				_, err := os.Stat(filepath.Join(f.dir, "zserv.api"))
				return err
			}); err != nil {
				t.Fatalf("zebra did not come up: %v", err)
			}
		}
	}
	if err := lab.WaitFor(lab.Within(t, 20*time.Second), 200*time.Millisecond, func() error {
		_, err := f.vtysh("show bgp summary json")
		return err
	}); err != nil {
		t.Fatalf("bgpd did not come up: %v", err)
	}
	return f
}

// vtysh runs commands in bgpd's shell: FRR's own view, independent of the code under test.
func (f *frr) vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", f.dir, "-d", "bgpd"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %w: %s", cmds, err, out)
	}
	return string(out), nil
}

func (f *frr) configure(t *testing.T, lines ...string) {
	t.Helper()
	cmds := append([]string{"configure terminal", fmt.Sprintf("router bgp %d", cloudASN)}, lines...)
	if _, err := f.vtysh(cmds...); err != nil {
		t.Fatal(err)
	}
}

// asPaths is, per sending neighbor, the AS path bgpd holds for prefix.
func (f *frr) asPaths(prefix netip.Prefix) (map[string]string, error) {
	out, err := f.vtysh("show bgp ipv4 unicast " + prefix.String() + " json")
	if err != nil {
		return nil, err
	}
	var v struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	paths := map[string]string{}
	for _, p := range v.Paths {
		paths[p.Peer.PeerID] = p.ASPath.String
	}
	return paths, nil
}

// state is bgpd's state of the session with peer.
func (f *frr) state(peer netip.Addr) string {
	out, err := f.vtysh("show bgp neighbors " + peer.String() + " json")
	if err != nil {
		return err.Error()
	}
	var v map[string]struct {
		State string `json:"bgpState"`
	}
	if json.Unmarshal([]byte(out), &v) != nil {
		return out
	}
	return v[peer.String()].State
}

// TestSpeakerWithFRR: the speaker, in a namespace given by path, runs two sessions over two links (the tunnels'
// inside /30s, one with an MD5 key) with FRR's bgpd as the cloud. It learns the cloud's prefix from both and
// installs it via the preferred tunnel; FRR holds our network from both sessions, prepended on the other one;
// when FRR shuts the preferred session down, and when the preferred link goes down, the route moves to the other
// tunnel; Close withdraws it.
func TestSpeakerWithFRR(t *testing.T) {
	l := lab.New(t, "unshare", "vtysh")
	app, cloudNS := l.Namespace("app"), l.Namespace("cloud")
	l.Link(app, "tun1", labOur1.String()+"/30", cloudNS, "gw1", labCloud1.String()+"/30")
	l.Link(app, "tun2", labOur2.String()+"/30", cloudNS, "gw2", labCloud2.String()+"/30")
	f := startFRR(t, cloudNS)

	sink := &bgptest.Sink{}
	s, err := bgp.New(bgp.Opts{Sink: sink, NetnsPath: "/run/netns/" + app.Name, ResyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := bgp.Config{
		LocalASN: ourASN,
		Neighbors: []bgp.Neighbor{
			{Name: "tunnel1", LocalAddress: labOur1, PeerAddress: labCloud1, PeerASN: cloudASN, HoldTime: 9 * time.Second,
				LocalPreference: 200, Password: labPassword},
			{Name: "tunnel2", LocalAddress: labOur2, PeerAddress: labCloud2, PeerASN: cloudASN, HoldTime: 9 * time.Second,
				Prepend: 2},
		},
		Networks: []netip.Prefix{localNet},
	}
	ctx := lab.Within(t, 3*time.Minute)
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, d time.Duration, cond func() error) {
		t.Helper()
		start := time.Now()
		if err := lab.WaitFor(lab.Within(t, d), 100*time.Millisecond, cond); err != nil {
			t.Fatalf("not within %s: %s: %v\nstatus: %+v\nroutes: %+v\nsink: %q", d, what, err, s.Status(), s.Routes(), sink.Calls())
		}
		t.Logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
	}
	sessions := func(want ...string) func() error {
		return func() error {
			for i, n := range s.Status().Neighbors {
				if n.State != want[i] {
					return fmt.Errorf("%s is %s, FRR says %s", n.Name, n.State, f.state(cfg.Neighbors[i].LocalAddress))
				}
			}
			return nil
		}
	}
	via := func(name string, nh netip.Addr) func() error {
		return func() error {
			r, ok := sink.Route(cloudNet)
			if !ok || r.Neighbor != name || r.NextHop != nh {
				return fmt.Errorf("installed: %+v (%v)", r, ok)
			}
			return nil
		}
	}

	wait("both sessions established", 60*time.Second, sessions(bgp.StateEstablished, bgp.StateEstablished))
	for _, p := range []netip.Addr{labOur1, labOur2} {
		if st := f.state(p); st != "Established" {
			t.Errorf("FRR's session with %s is %s", p, st)
		}
	}
	wait("10.2.0.0/16 installed via tunnel1", 10*time.Second, via("tunnel1", labCloud1))
	if routes := s.Routes(); len(routes) != 2 || !routes[0].Best || routes[0].LocalPreference != 200 || routes[1].Neighbor != "tunnel2" {
		t.Errorf("Routes: %+v, want the tunnel1 path best with local preference 200, and tunnel2's", routes)
	}
	wait("FRR holds our network from both sessions, prepended on tunnel2", 10*time.Second, func() error {
		paths, err := f.asPaths(localNet)
		if err != nil {
			return err
		}
		want := map[string]string{labOur1.String(): "65000", labOur2.String(): "65000 65000 65000"}
		if fmt.Sprint(paths) != fmt.Sprint(want) {
			return fmt.Errorf("FRR's AS paths for %s: %v, want %v", localNet, paths, want)
		}
		return nil
	})

	// The cloud shuts the preferred session down (a Cease notification): the route moves at once.
	f.configure(t, "neighbor "+labOur1.String()+" shutdown")
	wait("10.2.0.0/16 moved to tunnel2 after FRR shut tunnel1's session", 10*time.Second, via("tunnel2", labCloud2))
	f.configure(t, "no neighbor "+labOur1.String()+" shutdown")
	wait("tunnel1's session back", 60*time.Second, sessions(bgp.StateEstablished, bgp.StateEstablished))
	wait("10.2.0.0/16 back via tunnel1", 10*time.Second, via("tunnel1", labCloud1))

	// The preferred link goes down without a word: the hold time (9 s) ends the session, the route moves.
	link, err := app.Handle().LinkByName("tun1")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Handle().LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	wait("10.2.0.0/16 moved to tunnel2 after tunnel1's link went down", 20*time.Second, via("tunnel2", labCloud2))
	if st := s.Status().Neighbors[0]; st.State == bgp.StateEstablished {
		t.Errorf("tunnel1 still established after its link went down: %+v", st)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r := sink.Routes(); len(r) != 0 {
		t.Errorf("after Close the sink holds %v", r)
	}
	if !strings.Contains(strings.Join(sink.Calls(), "\n"), "withdraw "+cloudNet.String()) {
		t.Errorf("no withdraw recorded: %q", sink.Calls())
	}
}
