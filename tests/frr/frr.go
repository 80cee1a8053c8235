// Package frr runs FRR's bgpd (and, if asked, zebra) inside a lab namespace, as the far side's BGP speaker of the
// tests, and reads FRR's own view of its sessions and routes through vtysh: a real peer, independent of the code
// under test. The daemons run as root (-S) with a private /run, their configuration, pid files and vty sockets
// in a directory of their own; no vty TCP port is opened. bgpd alone runs as root (-S); with zebra both run as
// FRR's user (zebra insists), and the directory is theirs.
package frr

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"toride/tests/lab"
)

// Dir is where Debian installs FRR's daemons.
const Dir = "/usr/lib/frr"

// Daemon is a running bgpd (with zebra when started WithZebra).
type Daemon struct {
	NS    *lab.Netns
	Dir   string
	BGPD  *lab.Process
	zebra bool
}

// Options shape a Daemon.
type Options struct {
	// Zebra also runs zebra, so that bgpd checks next hops and installs routes into the namespace's kernel table.
	// Without it bgpd runs alone (-Z): it announces and hears, and installs nothing.
	Zebra bool
}

// Start writes conf as bgpd's configuration and starts the daemons in ns. It skips (or, under lab.Required,
// fails) without FRR.
func Start(t testing.TB, ns *lab.Netns, conf string, o Options) *Daemon {
	t.Helper()
	need := []string{filepath.Join(Dir, "bgpd"), "/usr/bin/vtysh"}
	if o.Zebra {
		need = append(need, filepath.Join(Dir, "zebra"))
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			if lab.Required() {
				t.Fatalf("%s is missing (the frr package: tests/deps.sh test installs it)", p)
			}
			t.Skipf("%s is missing (the frr package: tests/deps.sh test installs it)", p)
		}
	}
	dir, err := os.MkdirTemp("", "toride-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "bgpd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zebra.conf"), []byte("hostname "+ns.Name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{NS: ns, Dir: dir, zebra: o.Zebra}
	if o.Zebra {
		u, err := user.Lookup("frr")
		if err != nil {
			t.Fatalf("FRR's user: %v (the frr package makes it)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, name := range []string{"", "bgpd.conf", "zebra.conf", "run"} {
			if err := os.Chown(filepath.Join(dir, name), uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		d.run(t, "zebra")
		if err := lab.WaitFor(lab.Within(t, 20*time.Second), 100*time.Millisecond, func() error {
			_, err := os.Stat(filepath.Join(dir, "zserv.api"))
			return err
		}); err != nil {
			t.Fatalf("zebra in %s did not come up: %v", ns.Name, err)
		}
	}
	d.StartBGPD(t)
	return d
}

func (d *Daemon) run(t testing.TB, daemon string) *lab.Process {
	t.Helper()
	args := fmt.Sprintf("%s/%s -P 0 -f %s/%s.conf -i %s/%s.pid -z %s/zserv.api --vty_socket %s",
		Dir, daemon, d.Dir, daemon, d.Dir, daemon, d.Dir, d.Dir)
	if !d.zebra {
		args += " -S -Z"
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount --bind "+d.Dir+"/run /run && exec "+args)
	return d.NS.StartCmd(cmd)
}

// StartBGPD (re)starts bgpd and waits until it answers.
func (d *Daemon) StartBGPD(t testing.TB) {
	t.Helper()
	d.BGPD = d.run(t, "bgpd")
	if err := lab.WaitFor(lab.Within(t, 20*time.Second), 100*time.Millisecond, func() error {
		if done, err := d.BGPD.Exited(); done {
			return lab.Permanent(fmt.Errorf("bgpd exited: %v", err))
		}
		_, err := d.VTY("show bgp summary json")
		return err
	}); err != nil {
		t.Fatalf("bgpd in %s: %v\n%s", d.NS.Name, err, d.BGPD.Output())
	}
}

// VTY runs commands in bgpd's shell.
func (d *Daemon) VTY(cmds ...string) (string, error) {
	args := []string{"--vty_socket", d.Dir, "-d", "bgpd"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %w: %s", cmds, err, out)
	}
	return string(out), nil
}

// Configure runs configuration lines under `router bgp ASN`.
func (d *Daemon) Configure(t testing.TB, asn uint32, lines ...string) {
	t.Helper()
	cmds := append([]string{"configure terminal", fmt.Sprintf("router bgp %d", asn)}, lines...)
	if _, err := d.VTY(cmds...); err != nil {
		t.Fatal(err)
	}
}

// State is bgpd's state of its session with peer ("Established", "Active", ...), or the error.
func (d *Daemon) State(peer netip.Addr) string {
	out, err := d.VTY("show bgp neighbors " + peer.String() + " json")
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

// Received returns the prefixes bgpd accepted from peer, each with its AS path.
func (d *Daemon) Received(peer netip.Addr) (map[string]string, error) {
	out, err := d.VTY("show bgp ipv4 unicast neighbors " + peer.String() + " routes json")
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

// ASPaths returns, per sending peer (its address), the AS path bgpd holds for prefix.
func (d *Daemon) ASPaths(prefix netip.Prefix) (map[string]string, error) {
	out, err := d.VTY("show bgp ipv4 unicast " + prefix.String() + " json")
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
