// Package ovpnclient runs the stock OpenVPN 2.6 client in a lab namespace for end-to-end tests. The client cannot
// answer a static challenge without a terminal, so it is driven through its management interface (a unix socket):
// the driver releases the hold, answers "Auth" with the user name and "SCRV1:<b64 password>:<b64 OTP>", and the
// test reads the client's log.
package ovpnclient

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
)

// Options describe one client run.
type Options struct {
	Config   string        // the .ovpn text
	User     string        // answered to the Auth username prompt
	Password string        // the static challenge's password part ("" in the cloud's OTP profile)
	OTP      func() string // the static challenge's response; nil: the profile has no challenge
	Extra    []string      // more command-line options
}

// Client is one running openvpn client.
type Client struct {
	Proc *lab.Process
	dir  string
	// OTPSent is the last response sent (for replay tests).
	OTPSent chan string
}

// Start runs the client in ns with its files in a fresh directory.
func Start(t testing.TB, ns *lab.Netns, opts Options) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "ovpn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "client.ovpn")
	if err := os.WriteFile(conf, []byte(opts.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "mgmt.sock")
	args := append([]string{"--config", conf, "--disable-dco", "--verb", "3", "--connect-retry-max", "1",
		"--management", sock, "unix", "--management-hold", "--management-query-passwords"}, opts.Extra...)
	c := &Client{dir: dir, OTPSent: make(chan string, 8)}
	c.Proc = ns.Start("openvpn", args...)
	go c.drive(sock, opts)
	return c
}

// drive answers the management interface until the client ends.
func (c *Client) drive(sock string, opts Options) {
	var conn net.Conn
	for i := 0; i < 100; i++ {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		select {
		case <-c.Proc.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if conn == nil {
		return
	}
	defer conn.Close()
	go func() { <-c.Proc.Done(); conn.Close() }()
	send := func(line string) { fmt.Fprintf(conn, "%s\n", line) }
	send("hold release")
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ">HOLD:"):
			send("hold release")
		case strings.HasPrefix(line, ">PASSWORD:Need 'Auth'"):
			send(fmt.Sprintf("username \"Auth\" %s", opts.User))
			pw := opts.Password
			if opts.OTP != nil {
				otp := opts.OTP()
				select {
				case c.OTPSent <- otp:
				default:
				}
				pw = "SCRV1:" + base64.StdEncoding.EncodeToString([]byte(opts.Password)) + ":" + base64.StdEncoding.EncodeToString([]byte(otp))
			}
			send(fmt.Sprintf("password \"Auth\" %q", pw))
		}
	}
}

// WaitConnected waits until the client has its tunnel up.
func (c *Client) WaitConnected(ctx context.Context) error {
	return c.Proc.WaitOutput(ctx, "Initialization Sequence Completed")
}

// WaitLog waits until the client has printed substr.
func (c *Client) WaitLog(ctx context.Context, substr string) error {
	return c.Proc.WaitOutput(ctx, substr)
}

// Dir is the client's working directory (its configuration is client.ovpn there).
func (c *Client) Dir() string { return c.dir }

// Stop ends the client.
func (c *Client) Stop() { c.Proc.Stop() }
