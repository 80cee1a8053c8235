package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boombuler/barcode/qr"
	"github.com/creack/pty"

	"toride/tests/lab"
	"toride/tests/toridetest"
)

// screen is what a terminal has received from a program, read in the background.
type screen struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen int // what earlier expectations consumed
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\r`)

// text is what arrived since the last expectation, without the cursor movements, and where the buffer ended.
func (s *screen) text() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansi.ReplaceAllString(s.buf.String()[s.seen:], ""), s.buf.Len()
}

// expect waits until wants have arrived since the last expectation, each after the one before it (a prompt the
// line editor redraws while the command runs must not count as the prompt that ends its output), then consumes
// what it read.
func (s *screen) expect(t *testing.T, step string, wants ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, end := s.text()
		missing, rest := "", got
		for _, w := range wants {
			i := strings.Index(rest, w)
			if i < 0 {
				missing = w
				break
			}
			rest = rest[i+len(w):]
		}
		if missing == "" {
			s.mu.Lock()
			s.seen = end
			s.mu.Unlock()
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the screen never showed %q (in its turn); it shows:\n%s", step, missing, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsoleOnATerminal types into the toride shell on a pseudo-terminal, against a real torided: TAB
// completion, ? help from the schema, configuration mode with its prompt and + marks, an error pointing at the
// wrong word, commit, rollback, and the history file.
func TestConsoleOnATerminal(t *testing.T) {
	l := lab.New(t, "unshare")
	box := l.Namespace("box")
	lan := l.Namespace("lan")
	l.Link(box, "eth0", "", lan, "eth0", "192.168.1.2/24")
	lan.DHCPServer("eth0", "192.168.1.1", "192.168.1.1")
	d := toridetest.Start(t, box, t.TempDir())

	home := t.TempDir()
	cmd := exec.Command(toridetest.Bin("toride"), "--socket", d.Socket)
	cmd.Env = []string{"HOME=" + home, "TERM=vt100", "PATH=/usr/bin:/bin"}
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	scr := &screen{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := tty.Read(b)
			scr.mu.Lock()
			scr.buf.Write(b[:n])
			scr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	typeKeys := func(keys string) {
		t.Helper()
		for _, k := range keys {
			// One key at a time, as a person types: the shell answers TAB and ? before the next key.
			if _, err := tty.Write([]byte(string(k))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(15 * time.Millisecond)
		}
	}

	scr.expect(t, "start", "Toride console", "toride> ")

	typeKeys("sh\t")
	scr.expect(t, "TAB completes a command", "show ")
	typeKeys("sys\t\t")
	scr.expect(t, "a second TAB lists what may follow", "commit  image")
	typeKeys("c\t\r")
	scr.expect(t, "TAB completes show system commit", "system commit", "0   ", " by ")

	typeKeys("configure\r")
	scr.expect(t, "configure", "toride(config)# ")

	typeKeys("set system ?")
	scr.expect(t, "? lists the schema's children", "Possible completions:", "host-name", "Host name (RFC 1123)",
		"interfaces", "Network interfaces")
	typeKeys("interfaces ?")
	scr.expect(t, "? lists the existing keys", "<interface>", "eth0")
	typeKeys("e\t")
	scr.expect(t, "TAB completes an existing key", "th0 ")
	typeKeys("mtu ?")
	scr.expect(t, "? on a value gives its range and default", "<576-9000>", "Maximum transmission unit (default 1500)")
	typeKeys("1400\r")
	scr.expect(t, "set", "toride(config*)# ")

	typeKeys("set system interfces eth0 mtu 1400\r")
	got := scr.expect(t, "a wrong word", `no node "interfces" here`, "toride(config*)# ")
	if !strings.Contains(got, "  set system interfces eth0 mtu 1400\n             ^\n") {
		t.Errorf("the error does not point at interfces:\n%s", got)
	}

	typeKeys("edit system interfaces eth0\r")
	scr.expect(t, "edit", "toride(config* system interfaces eth0)# ")
	typeKeys("show\r")
	got = scr.expect(t, "show marks the change", "+mtu 1400", "toride(config* system interfaces eth0)# ")
	if !strings.Contains(got, "\n dhcp\n") {
		t.Errorf("show lacks the unchanged dhcp:\n%s", got)
	}
	typeKeys("top\r")
	scr.expect(t, "top", "toride(config*)# ")
	typeKeys("exit\r")
	scr.expect(t, "exit with uncommitted changes", "uncommitted changes", "toride(config*)# ")

	typeKeys("commit from the console\r")
	scr.expect(t, "commit", "Committed revision 2.", "toride(config)# ")
	if out := d.MustToride("show", "configuration", "commands"); !strings.Contains(out, "set system interfaces eth0 mtu '1400'") {
		t.Fatalf("the commit did not reach torided:\n%s", out)
	}
	typeKeys("run show system commit\r")
	scr.expect(t, "run", ": from the console", "toride(config)# ")

	typeKeys("rollback 1\r")
	scr.expect(t, "rollback", "Committed revision 3.", "toride(config)# ")
	if out := d.MustToride("show", "configuration", "commands"); strings.Contains(out, "mtu") {
		t.Fatalf("the rollback left the MTU:\n%s", out)
	}
	typeKeys("exit\r")
	scr.expect(t, "exit configuration mode", "toride> ")
	typeKeys("show interfaces\r")
	got = scr.expect(t, "show interfaces", "INTERFACE", "toride> ")
	if !regexp.MustCompile(`eth0 +up +1500 +\S+ +\S+ +0/0 +192\.168\.1\.1/24`).MatchString(got) {
		t.Errorf("show interfaces lacks eth0 up with its address:\n%s", got)
	}
	typeKeys("show log lines 20\r")
	scr.expect(t, "show log", "INFO  torided running revision=", "toride> ")

	// OTP enrollment: an SSL-VPN connection made through the REST API, a key issued at the console by name,
	// TAB offering the server; the QR code on the screen is the URI shown above it, module for module.
	createConnection(t, d)
	typeKeys("request sslvpn otp generate m\t")
	scr.expect(t, "TAB completes the server", "generate main ")
	typeKeys("alice\r")
	got = scr.expect(t, "otp generate", "Scan with Google or Microsoft Authenticator:", "toride> ")
	uri := regexp.MustCompile(`URI +(otpauth://\S+)`).FindStringSubmatch(got)
	if uri == nil || !strings.Contains(uri[1], "Toride%20main:alice") {
		t.Fatalf("no otpauth:// URI of alice on main:\n%s", got)
	}
	checkQR(t, got, uri[1])
	typeKeys("exit\r")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("toride exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("toride did not leave on exit")
	}

	hist := filepath.Join(home, ".toride_history")
	fi, err := os.Stat(hist)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("history file: %v, %v", fi, err)
	}
	if data, _ := os.ReadFile(hist); !strings.Contains(string(data), "commit from the console") {
		t.Errorf("history lacks the commit:\n%s", data)
	}
}

// createConnection makes the SSL-VPN connection main (and its VPN service) through the REST API.
func createConnection(t *testing.T, d *toridetest.Daemon) {
	t.Helper()
	var svc struct {
		VPNService struct{ ID string } `json:"vpnservice"`
	}
	ctx := context.Background()
	if err := d.API.Do(ctx, "POST", "/vpn/nfv/vpnservices", map[string]any{"vpnservice": map[string]any{
		"name": "office", "local_networks": []string{"10.50.0.0/24"}, "external_address": "192.168.1.1"}}, &svc); err != nil {
		t.Fatal(err)
	}
	if err := d.API.Do(ctx, "POST", "/vpn/nfv/ssl-vpn-v3-connections", map[string]any{"ssl-vpn-v3-connection": map[string]any{
		"name": "main", "client_address_pool_cidr": "10.8.0.0/24", "vpnservice_id": svc.VPNService.ID, "otp": true, "flavor": "small"}}, nil); err != nil {
		t.Fatal(err)
	}
}

// checkQR reads the QR code drawn on the screen (half blocks, two rows of modules a line, in a 4-module
// margin) and compares it with the encoding of uri.
func checkQR(t *testing.T, screen, uri string) {
	t.Helper()
	var rows [][]bool
	for _, l := range strings.Split(screen, "\n") {
		if l == "" || strings.Trim(l, "█▀▄ ") != "" {
			continue
		}
		var top, bottom []bool
		for _, r := range l {
			top, bottom = append(top, r == '█' || r == '▀'), append(bottom, r == '█' || r == '▄')
		}
		rows = append(rows, top, bottom)
	}
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil {
		t.Fatal(err)
	}
	n := code.Bounds().Dx()
	if len(rows) < n+8 || len(rows[0]) != n+8 {
		t.Fatalf("the QR block is %d rows, the first of %d modules; want %d of %d:\n%s", len(rows), len(append(rows, nil)[0]), n+8, n+8, screen)
	}
	for y := range n {
		for x := range n {
			r, _, _, _ := code.At(x, y).RGBA()
			if rows[y+4][x+4] != (r == 0) {
				t.Fatalf("module (%d,%d) of the QR code on the screen is wrong:\n%s", x, y, screen)
			}
		}
	}
}

// TestConsoleScript pipes a file of set lines through toride without a terminal: no prompts, every good line
// applied, and the exit status of the bad line, whose error points at the wrong word.
func TestConsoleScript(t *testing.T) {
	l := lab.New(t, "unshare")
	box := l.Namespace("box")
	d := toridetest.Start(t, box, t.TempDir())

	script := "configure\n" +
		"set system host-name piped-gw\n" +
		"set system interfaces eth0 mtu 99999\n" +
		"set system dns name-server 192.0.2.53\n" +
		"commit piped\n" +
		"exit\n"
	out, err := d.TorideInput(script)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("status: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(err.Error(), `"99999" is not a number from 576 to 9000`) ||
		!strings.Contains(err.Error(), "  set system interfaces eth0 mtu 99999\n"+strings.Repeat(" ", 33)+"^") {
		t.Errorf("the error does not point at the value:\n%v", err)
	}
	if strings.Contains(out, "toride") || !strings.Contains(out, "Committed revision 2.") {
		t.Errorf("output:\n%s", out)
	}
	if got := d.Hostname(); got != "piped-gw" {
		t.Errorf("host name %q: the good lines were not committed", got)
	}
}
