// Package ovpnclient runs the stock OpenVPN 2.6 client in a lab namespace, for the engine's interop tests and the
// end-to-end tests alike. The client cannot answer a static challenge without a terminal, so it is driven through
// its management interface (a unix socket): the driver releases the hold, answers "Auth" with the user name and
// "SCRV1:<b64 password>:<b64 OTP>", and the test reads the client's log.
//
// A client is stopped at the test's cleanup, also when the test fails, and its log is then printed (the lab
// does both). Methods of a Client are safe for concurrent use.
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
	Config   string        // the configuration (.ovpn text); the runner adds the management interface
	Dir      string        // the directory the client runs in, holding the files Config names by relative path; "": none
	User     string        // answered to the Auth username prompt
	Password string        // the password, or the static challenge's password part ("" in the cloud's OTP profile)
	OTP      func() string // the static challenge's response; nil: the profile has no challenge
	// KeepTrying lets the client retry after a failed connection as Config says; by default it tries once and
	// ends (--connect-retry-max 1), so a refused client does not linger.
	KeepTrying bool
	Args       []string // more command-line options, after Config
}

// Client is one running openvpn client.
type Client struct {
	Proc   *lab.Process
	dir    string        // the runner's own: the configuration and the management socket
	driven chan struct{} // closed when the management driver has ended
}

// managementWait bounds how long the client may take to open its management interface.
const managementWait = 10 * time.Second

// Start runs the client in ns and connects to its management interface; it fails the test if openvpn ends
// before that or does not get there within 10 s.
func Start(t testing.TB, ns *lab.Netns, opts Options) *Client {
	t.Helper()
	// A short directory: the management socket's path must fit in sun_path.
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
	// Options before --config are defaults the configuration may change; those after it hold.
	args := []string{"--disable-dco", "--verb", "3"}
	if opts.Dir != "" {
		args = append(args, "--cd", opts.Dir)
	}
	args = append(args, "--config", conf, "--management", sock, "unix", "--management-hold", "--management-query-passwords")
	if !opts.KeepTrying {
		args = append(args, "--connect-retry-max", "1")
	}
	c := &Client{dir: dir, driven: make(chan struct{})}
	c.Proc = ns.Start("openvpn", append(args, opts.Args...)...)
	var conn net.Conn
	if err := lab.WaitFor(lab.Within(t, managementWait), 20*time.Millisecond, func() error {
		if conn, err = net.Dial("unix", sock); err != nil {
			if exited, werr := c.Proc.Exited(); exited {
				return lab.Permanent(fmt.Errorf("openvpn ended (%v) before opening its management interface", werr))
			}
		}
		return err
	}); err != nil {
		close(c.driven)
		t.Fatal(err)
	}
	go c.drive(conn, opts)
	t.Cleanup(func() {
		c.Stop()
		<-c.driven
	})
	return c
}

// drive answers the management interface until the client ends.
func (c *Client) drive(conn net.Conn, opts Options) {
	defer close(c.driven)
	defer conn.Close()
	go func() {
		select {
		case <-c.Proc.Done():
		case <-c.driven:
		}
		conn.Close()
	}()
	send := func(line string) { fmt.Fprintf(conn, "%s\n", line) }
	send("hold release")
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ">HOLD:"):
			send("hold release")
		case strings.HasPrefix(line, ">PASSWORD:Need 'Auth'"):
			send(fmt.Sprintf("username \"Auth\" %q", opts.User))
			pw := opts.Password
			if opts.OTP != nil {
				pw = "SCRV1:" + base64.StdEncoding.EncodeToString([]byte(opts.Password)) + ":" + base64.StdEncoding.EncodeToString([]byte(opts.OTP()))
			}
			send(fmt.Sprintf("password \"Auth\" %q", pw))
		}
	}
}

// Connected is what the client logs once its tunnel is up.
const Connected = "Initialization Sequence Completed"

// WaitConnected waits until the client has its tunnel up.
func (c *Client) WaitConnected(ctx context.Context) error {
	return c.Proc.WaitOutput(ctx, Connected)
}

// WaitLog waits until the client has printed substr.
func (c *Client) WaitLog(ctx context.Context, substr string) error {
	return c.Proc.WaitOutput(ctx, substr)
}

// ConnectTime is how long the client took to connect by its own log, from the management interface's hold
// release (the client starts) to its tunnel up; zero unless the log shows both (verb 4 logs the release).
func (c *Client) ConnectTime() time.Duration {
	out := c.Proc.Output()
	start, end := logTime(out, "CMD 'hold release'"), logTime(out, Connected)
	if start.IsZero() || end.IsZero() {
		return 0
	}
	return end.Sub(start)
}

// logTime finds the first openvpn log line containing substr and returns its timestamp
// ("2026-11-23 19:31:30 us=912220 ...").
func logTime(out, substr string) time.Time {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, substr) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			break
		}
		ts, err := time.Parse("2006-01-02 15:04:05", f[0]+" "+f[1])
		var us int
		if _, err2 := fmt.Sscanf(f[2], "us=%d", &us); err != nil || err2 != nil {
			break
		}
		return ts.Add(time.Duration(us) * time.Microsecond)
	}
	return time.Time{}
}

// Dir is the runner's directory of the client (its configuration is client.ovpn there).
func (c *Client) Dir() string { return c.dir }

// Stop ends the client (SIGTERM, then SIGKILL after 5 s); it is idempotent.
func (c *Client) Stop() { c.Proc.Stop() }
