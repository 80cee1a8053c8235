package anyconnect_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/tests/lab"
)

const (
	labServerIP = "10.99.0.1"
	labClientIP = "10.99.0.2"
	labPort     = 443
)

// interop is one real-client test: the engine in this process, its sockets in a server namespace; the stock
// openconnect binary in a client namespace.
type interop struct {
	t     testing.TB
	lab   *lab.Lab
	srvNS *lab.Netns
	cliNS *lab.Netns
	dir   string
	pki   *testPKI
	be    *testBackend
	srv   *anyconnect.Server
	wg    sync.WaitGroup

	mu      sync.Mutex
	conns   []net.Conn // accepted TCP connections, so a test can cut them
	clients int
}

func newInterop(t *testing.T, cfg anyconnect.Config) *interop {
	t.Helper()
	return newInteropPKI(t, nil, cfg)
}

// newInteropPKI is newInterop with the test's own PKI (nil for a new one).
func newInteropPKI(t *testing.T, pki *testPKI, cfg anyconnect.Config) *interop {
	t.Helper()
	return newInteropWith(t, pki, cfg, nil)
}

// newInteropWith is newInteropPKI with a hook that adjusts the server before it serves.
func newInteropWith(t *testing.T, pki *testPKI, cfg anyconnect.Config, adjust func(*anyconnect.Server)) *interop {
	t.Helper()
	l := lab.New(t, "openconnect", "ping", "nft")
	if pki == nil {
		pki = newTestPKI(t, labServerIP)
	}
	e := &interop{t: t, lab: l, pki: pki, be: newTestBackend()}
	e.srvNS = l.Namespace("srv")
	e.cliNS = l.Namespace("cli")
	l.Link(e.srvNS, "eth0", labServerIP+"/24", e.cliNS, "eth0", labClientIP+"/24")
	dir, err := os.MkdirTemp("", "actest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.dir = dir
	e.writeScript()
	if cfg.TLS == nil {
		cfg.TLS = e.pki.serverTLS()
	}
	e.srv, err = anyconnect.NewServer(cfg, e.be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { e.srv.Close(); e.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("server did not shut down within 15s")
		}
	})
	if adjust != nil {
		adjust(e.srv)
	}
	e.recordSeeds()
	e.serve()
	return e
}

// serve opens TCP and UDP 443 in the server namespace and serves them.
func (e *interop) serve() {
	e.t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := e.srvNS.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", labServerIP, labPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", labServerIP, labPort))
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(func() { cancel(); ln.Close() })
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				err := e.srv.ServeConn(ctx, c)
				e.t.Logf("ServeConn %s: %v", c.RemoteAddr(), err)
			}()
		}
	}()
	go func() {
		defer e.wg.Done()
		if err := e.srv.ServeDTLS(ctx, pc); err != nil {
			e.t.Errorf("ServeDTLS: %v", err)
		}
		pc.Close()
	}()
}

// cutConnections closes every accepted TCP connection, as a broken network would.
func (e *interop) cutConnections() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	e.conns = nil
}

// writeScript writes the client's script: instead of vpnc-script (which writes /etc/resolv.conf), it sets the
// tunnel's address, MTU and split routes, and records the environment of each call for the test.
func (e *interop) writeScript() {
	script := `#!/bin/sh
env | sort > "` + e.dir + `/env.$reason.$$"
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
	cp "` + e.dir + `/env.$reason.$$" "` + e.dir + `/env.tmp.$$"
	mv "` + e.dir + `/env.tmp.$$" "` + e.dir + `/env.connected.${AC_TAG:-x}"
	;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(e.dir, "script.sh"), []byte(script), 0o755); err != nil {
		e.t.Fatal(err)
	}
}

// client is a running openconnect.
type client struct {
	e     *interop
	p     *lab.Process
	tag   string
	start time.Time
}

// openconnect starts the stock client with the test's script, the server pin and args; stdin feeds its
// password prompts (one line each).
func (e *interop) openconnect(stdin string, args ...string) *client {
	e.t.Helper()
	return e.openconnectURL(fmt.Sprintf("https://%s/", labServerIP), stdin, args...)
}

// openconnectURL is openconnect to another server URL.
func (e *interop) openconnectURL(url, stdin string, args ...string) *client {
	e.t.Helper()
	e.clients++
	c := &client{e: e, start: time.Now(), tag: fmt.Sprint(e.clients)}
	full := append([]string{"--protocol=anyconnect", "--servercert", e.pki.pin, "--script", filepath.Join(e.dir, "script.sh"),
		"--non-inter", "-v"}, args...)
	if !slices.Contains(args, "--authenticate") {
		full = append(full, "--dump-http-traffic")
	}
	full = append(full, url)
	cmd := exec.Command("openconnect", full...)
	cmd.Env = append(os.Environ(), "AC_TAG="+c.tag)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	c.p = e.cliNS.StartCmd(cmd)
	return c
}

func (c *client) waitOutput(substr string, d time.Duration) {
	c.e.t.Helper()
	if err := c.p.WaitOutput(lab.Within(c.e.t, d), substr); err != nil {
		c.e.t.Fatalf("%v\n---- openconnect output ----\n%s", err, c.p.Output())
	}
}

// waitConnected waits for the script's connect call and returns its environment.
func (c *client) waitConnected(d time.Duration) map[string]string {
	c.e.t.Helper()
	var env map[string]string
	err := lab.WaitFor(lab.Within(c.e.t, d), 20*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(c.e.dir, "env.connected."+c.tag))
		if err != nil {
			if exited, werr := c.p.Exited(); exited {
				return lab.Permanent(fmt.Errorf("openconnect exited (%v) before connecting", werr))
			}
			return err
		}
		env = parseEnv(string(b))
		if env["INTERNAL_IP4_ADDRESS"] == "" {
			return fmt.Errorf("the script's environment has no INTERNAL_IP4_ADDRESS:\n%s", b)
		}
		return nil
	})
	if err != nil {
		c.e.t.Fatalf("%v\n---- openconnect output ----\n%s", err, c.p.Output())
	}
	return env
}

func parseEnv(s string) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// ping pings addr from the client namespace until it answers (bounded), and fails the test otherwise.
func (e *interop) ping(addr string, d time.Duration) {
	e.t.Helper()
	err := lab.WaitFor(lab.Within(e.t, d), 100*time.Millisecond, func() error {
		_, err := e.cliNS.Run("ping", "-n", "-q", "-c", "1", "-W", "1", addr)
		return err
	})
	if err != nil {
		e.t.Fatalf("ping %s: %v", addr, err)
	}
}
