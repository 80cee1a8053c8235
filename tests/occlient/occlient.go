// Package occlient runs the stock openconnect client (--protocol=anyconnect) in a lab namespace, for the
// engine's interop tests and the end-to-end tests alike. Instead of vpnc-script, which writes the host's
// /etc/resolv.conf, the client runs a small script of the test's own: it configures the tunnel device's address,
// MTU and split routes, and records the environment openconnect hands it, so the test can read the address and
// routes it got.
//
// A client is stopped at the test's cleanup, also when the test fails, and its log is then printed (the lab
// does both). Methods of a Client are safe for concurrent use.
package occlient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
)

const script = `#!/bin/sh
env | sort > "$OC_DIR/env.$reason"
case "$reason" in
connect)
	ip link set dev "$TUNDEV" up mtu "${INTERNAL_IP4_MTU:-1400}"
	ip addr add "$INTERNAL_IP4_ADDRESS/$INTERNAL_IP4_NETMASK" dev "$TUNDEV"
	i=0
	while [ "$i" -lt "${CISCO_SPLIT_INC:-0}" ]; do
		eval a=\$CISCO_SPLIT_INC_${i}_ADDR
		eval m=\$CISCO_SPLIT_INC_${i}_MASKLEN
		ip route replace "$a/$m" dev "$TUNDEV"
		i=$((i+1))
	done
	# cp then rename: the test polls for this file and must never read it half written.
	cp "$OC_DIR/env.connect" "$OC_DIR/env.tmp"
	mv "$OC_DIR/env.tmp" "$OC_DIR/env.connected"
	;;
esac
exit 0
`

// Options describe one client run.
type Options struct {
	Server     string   // "https://192.0.2.1/"
	CAFile     string   // the CA that issued the server's certificate; or
	ServerCert string   // the server's key pinned ("pin-sha256:…"), instead of CAFile
	Stdin      string   // answers to the password prompts, one line each
	Args       []string // more options: -u USER, --authgroup=G, -c CERT -k KEY, --passwd-on-stdin, --cookie-on-stdin…
}

// Client is one running openconnect.
type Client struct {
	Proc    *lab.Process
	Started time.Time // when the client was started
	dir     string
}

// Start runs openconnect in ns.
func Start(t testing.TB, ns *lab.Netns, o Options) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "oc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "script.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--protocol=anyconnect", "--script", filepath.Join(dir, "script.sh"), "--non-inter", "-v"}
	if o.CAFile != "" {
		args = append(args, "--cafile", o.CAFile)
	}
	if o.ServerCert != "" {
		args = append(args, "--servercert", o.ServerCert)
	}
	cmd := exec.Command("openconnect", append(append(args, o.Args...), o.Server)...)
	cmd.Env = append(os.Environ(), "OC_DIR="+dir)
	if o.Stdin != "" {
		cmd.Stdin = strings.NewReader(o.Stdin)
	}
	c := &Client{Started: time.Now(), dir: dir}
	c.Proc = ns.StartCmd(cmd)
	t.Cleanup(c.Stop)
	return c
}

// WaitConnected waits until the client has configured its tunnel and returns the environment openconnect gave
// the script (INTERNAL_IP4_ADDRESS, CISCO_SPLIT_INC_…).
func (c *Client) WaitConnected(ctx context.Context) (map[string]string, error) {
	var env map[string]string
	err := lab.WaitFor(ctx, 20*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(c.dir, "env.connected"))
		if err != nil {
			if exited, werr := c.Proc.Exited(); exited {
				return lab.Permanent(fmt.Errorf("openconnect exited (%v) before connecting", werr))
			}
			return err
		}
		env = map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				env[k] = v
			}
		}
		if env["INTERNAL_IP4_ADDRESS"] == "" {
			return fmt.Errorf("the script's environment has no INTERNAL_IP4_ADDRESS:\n%s", b)
		}
		return nil
	})
	return env, err
}

// WaitLog waits until the client has printed substr.
func (c *Client) WaitLog(ctx context.Context, substr string) error {
	return c.Proc.WaitOutput(ctx, substr)
}

var cookieLine = regexp.MustCompile(`COOKIE='([^']+)'`)

// Cookie waits for a client started with --authenticate to end and returns the cookie it printed.
func (c *Client) Cookie(ctx context.Context) (string, error) {
	if err := c.Proc.WaitExit(ctx); err != nil {
		return "", err
	}
	m := cookieLine.FindStringSubmatch(c.Proc.Output())
	if m == nil {
		return "", errors.New("openconnect --authenticate printed no cookie")
	}
	return m[1], nil
}

// Routes lists the split-include routes in a connect environment.
func Routes(env map[string]string) []string {
	var out []string
	for i := 0; ; i++ {
		a, ok := env[fmt.Sprintf("CISCO_SPLIT_INC_%d_ADDR", i)]
		if !ok {
			return out
		}
		out = append(out, a+"/"+env[fmt.Sprintf("CISCO_SPLIT_INC_%d_MASKLEN", i)])
	}
}

// Stop ends the client (SIGTERM, then SIGKILL after 5 s); it is idempotent.
func (c *Client) Stop() { c.Proc.Stop() }
