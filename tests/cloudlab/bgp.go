package cloudlab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"toride/tests/lab"
)

// The lab's BGP numbers: the cloud's ASN (the cloud's default) and the site's (the configuration file's).
const (
	CloudASN = 64512
	SiteASN  = 65000
	CloudLAN = "10.2.0.0/24"
	frrDir   = "/usr/lib/frr"
)

// BGPSpeaker is one gateway's bgpd (FRR), standing for the cloud's BGP speaker of one tunnel. It runs without
// zebra: the gateway's charon (kernel-libipsec, 0.0.0.0/0) already sends everything but the cloud LAN into the
// tunnel, so nothing learned needs installing; what counts is what bgpd announces and what it hears.
type BGPSpeaker struct {
	NS   *lab.Netns
	Dir  string
	Proc *lab.Process
	Peer netip.Addr // the appliance's inside address of this tunnel
}

func startBGP(t testing.TB, ns *lab.Netns, i int) *BGPSpeaker {
	t.Helper()
	for _, p := range []string{filepath.Join(frrDir, "bgpd"), "/usr/bin/vtysh"} {
		if _, err := os.Stat(p); err != nil {
			if lab.Required() {
				t.Fatalf("%s is missing (the frr package: tests/deps.sh test installs it)", p)
			}
			t.Skipf("%s is missing (the frr package: tests/deps.sh test installs it)", p)
		}
	}
	dir, err := os.MkdirTemp("", "toride-bgp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	inside := netip.MustParsePrefix(GWInside[i])
	far, ours := inside.Addr().Next(), inside.Addr().Next().Next()
	conf := fmt.Sprintf(`frr defaults traditional
hostname gw%[1]d
log stdout informational
!
router bgp %[2]d
 bgp router-id %[3]s
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor %[4]s remote-as %[5]d
 neighbor %[4]s update-source %[3]s
 neighbor %[4]s timers 3 9
 neighbor %[4]s timers connect 2
 address-family ipv4 unicast
  network %[6]s
 exit-address-family
!
`, i+1, CloudASN, far, ours, SiteASN, CloudLAN)
	if err := os.WriteFile(filepath.Join(dir, "bgpd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	b := &BGPSpeaker{NS: ns, Dir: dir, Peer: ours}
	b.Start(t)
	return b
}

// Start (re)starts bgpd: as root (-S), without zebra (-Z) or a vty port (-P 0), with a private /run.
func (b *BGPSpeaker) Start(t testing.TB) {
	t.Helper()
	args := fmt.Sprintf("%s/bgpd -S -Z -P 0 -f %s/bgpd.conf -i %s/bgpd.pid --vty_socket %s", frrDir, b.Dir, b.Dir, b.Dir)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount --bind "+b.Dir+"/run /run && exec "+args)
	b.Proc = b.NS.StartCmd(cmd)
	if err := lab.WaitFor(lab.Within(t, 20*time.Second), 100*time.Millisecond, func() error {
		if done, err := b.Proc.Exited(); done {
			return lab.Permanent(fmt.Errorf("bgpd exited: %v", err))
		}
		_, err := b.VTY("show bgp summary json")
		return err
	}); err != nil {
		t.Fatalf("bgpd in %s: %v\n%s", b.NS.Name, err, b.Proc.Output())
	}
}

// VTY runs commands in bgpd's shell: FRR's own view, independent of the appliance's.
func (b *BGPSpeaker) VTY(cmds ...string) (string, error) {
	args := []string{"--vty_socket", b.Dir, "-d", "bgpd"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %w: %s", cmds, err, out)
	}
	return string(out), nil
}

// State is bgpd's state of its session with the appliance ("Established", "Active", ...).
func (b *BGPSpeaker) State() string {
	out, err := b.VTY("show bgp neighbors " + b.Peer.String() + " json")
	if err != nil {
		return err.Error()
	}
	var v map[string]struct {
		State string `json:"bgpState"`
	}
	if json.Unmarshal([]byte(out), &v) != nil {
		return out
	}
	return v[b.Peer.String()].State
}

// Received returns the prefixes bgpd has from the appliance, with their AS paths.
func (b *BGPSpeaker) Received() (map[string]string, error) {
	out, err := b.VTY("show bgp ipv4 unicast neighbors " + b.Peer.String() + " routes json")
	if err != nil {
		return nil, err
	}
	var v struct {
		Routes map[string][]struct {
			Path string `json:"path"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	got := map[string]string{}
	for p, paths := range v.Routes {
		if len(paths) > 0 {
			got[p] = paths[0].Path
		}
	}
	return got, nil
}
