package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// initialPassword is the admin's in a new image, to be changed at the first login (images/build.sh); the tests
// choose newPassword there.
const (
	initialPassword = "toride"
	newPassword     = "Kura-gate-2468"
)

// buildImage runs make image for arch and returns the qcow2 it made, or the one TORIDE_IMAGE (amd64) or
// TORIDE_IMAGE_ARM64 names, already built, with no build; built says which.
func buildImage(t *testing.T, top, arch string) (qcow2 string, built bool) {
	t.Helper()
	env := "TORIDE_IMAGE"
	if arch != "amd64" {
		env += "_" + strings.ToUpper(arch)
	}
	if image := os.Getenv(env); image != "" {
		return image, false
	}
	began := time.Now()
	build := exec.Command("make", "--no-print-directory", "-C", top, "image", "ARCH="+arch)
	build.Stdout, build.Stderr = testWriter{t}, testWriter{t}
	if err := build.Run(); err != nil {
		t.Fatalf("make image ARCH=%s: %v", arch, err)
	}
	t.Logf("%s image built in %s", arch, time.Since(began).Round(time.Second))
	return filepath.Join(top, "images/out/toride-"+arch+".qcow2"), true
}

// machineFiles makes, in dir, what a machine boots from that the boots write to: a disk over image (the changes go
// to it, not to the image) and a copy of the UEFI firmware's variable store. It returns their paths.
func machineFiles(t *testing.T, dir, image, firmwareVars string) (disk, vars string) {
	t.Helper()
	disk = filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
		"-b", image, disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	vars = filepath.Join(dir, filepath.Base(firmwareVars))
	raw, err := os.ReadFile(firmwareVars)
	if err != nil {
		t.Fatalf("%v (tests/deps.sh image installs the firmware)", err)
	}
	if err := os.WriteFile(vars, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return disk, vars
}

// guest is one boot of an image in qemu, driven through its serial console: what the console printed (con) and
// its keyboard (qemu's standard input). Not safe for concurrent use: one test drives it.
type guest struct {
	t     *testing.T
	ctx   context.Context
	cmd   *exec.Cmd
	con   *console
	stdin io.WriteCloser
	// password is the admin's console password, the new one once login has changed it.
	password string
}

// startGuest starts qemu (its serial console on standard input and output) for as long as ctx lasts, or until
// the test ends; if the test failed, the console's text goes to its log. password is the admin's.
func startGuest(t *testing.T, ctx context.Context, password, qemu string, args ...string) *guest {
	t.Helper()
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{t: t, ctx: ctx, cmd: cmd, con: &console{exited: make(chan struct{})}, stdin: stdin, password: password}
	cmd.Stdout, cmd.Stderr = g.con, g.con
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.con.err = cmd.Wait()
		close(g.con.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-g.con.exited
		if t.Failed() {
			t.Logf("serial console of %s:\n%s", qemu, g.con.String())
		}
	})
	return g
}

// await waits, for as long as within, until the console's text from offset from on matches re, and returns the
// offset just past the match.
func (g *guest) await(what, re string, from int, within time.Duration) int {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(g.ctx, within)
	defer cancel()
	rx := regexp.MustCompile(re)
	if err := g.con.await(ctx, rx, from); err != nil {
		g.t.Fatalf("%s: %v", what, err)
	}
	return from + rx.FindStringIndex(g.con.String()[from:])[1]
}

// send types text and Enter.
func (g *guest) send(text string) {
	g.t.Helper()
	if _, err := io.WriteString(g.stdin, text+"\r"); err != nil {
		g.t.Fatal(err)
	}
}

// answer waits for the prompt re after from, types line, and returns the offset after the prompt.
func (g *guest) answer(prompt, re, line string, from int) int {
	g.t.Helper()
	from = g.await(prompt, re, from, 4*time.Minute)
	g.send(line)
	return from
}

// run types a command into the toride shell and waits for the prompt after its answer, which it returns.
func (g *guest) run(command string) string {
	g.t.Helper()
	mark := g.con.Len()
	g.send(command)
	// The line editor redraws the line as it is typed and once more at Enter: the answer is over at the first
	// prompt that starts a line after the command's own.
	g.await(command, `(?s)`+regexp.QuoteMeta(command)+`[^\n]*\n(.*\n)?\r?toride(\(config\*?\)#|>) `, mark, time.Minute)
	return g.con.String()[mark:]
}

// login takes the console, from offset from on, to the toride shell: the login prompt gets the admin's name and
// password, and if login requires the password changed (the image's initial one), newPassword. It returns the
// offset past the toride prompt.
func (g *guest) login(from int, within time.Duration) int {
	g.t.Helper()
	steps := regexp.MustCompile(`(?i)(toride> )|(login: |retype new password: |new password: |current password: |password: )$`)
	deadline := time.Now().Add(within)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			g.t.Fatalf("login: no toride prompt within %s", within)
		}
		end := g.await("login", steps.String(), from, left)
		m := steps.FindStringSubmatch(g.con.String()[from:end])
		asked := strings.ToLower(m[1] + m[2])
		from = end
		switch asked {
		case "toride> ":
			return end
		case "login: ":
			g.send("admin")
		case "retype new password: ", "new password: ":
			g.send(newPassword)
			g.password = newPassword
		default: // the current password
			g.send(g.password)
		}
	}
}

// leased waits until show interfaces has eth0 up with its DHCP address: the embedded default's, which qemu's user
// network gives (10.0.2.15/24).
func (g *guest) leased() {
	g.t.Helper()
	for try := 0; ; try++ {
		out := g.run("show interfaces")
		if regexp.MustCompile(`eth0 +up .* 10\.0\.2\.15/24`).MatchString(out) {
			return
		}
		if try == 15 {
			g.t.Fatalf("show interfaces never showed eth0 with its DHCP address:\n%s", out)
		}
		time.Sleep(2 * time.Second)
	}
}

// ended waits, for as long as within, until qemu has exited: the guest powered off, or rebooted under
// -no-reboot.
func (g *guest) ended(what string, within time.Duration) {
	g.t.Helper()
	select {
	case <-g.con.exited:
	case <-time.After(within):
		g.t.Fatalf("%s: qemu still runs after %s", what, within)
	}
}

// powerOff has the toride shell power the appliance off and waits until qemu has exited.
func (g *guest) powerOff() {
	g.t.Helper()
	g.send("request system poweroff")
	g.ended("request system poweroff", 2*time.Minute)
}

// console collects the serial console's output as it comes, until qemu exits.
type console struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	exited chan struct{} // closed when qemu has exited, with err
	err    error
}

// escape matches the terminal's control sequences (systemd's colours, the shell's line editing), which the
// console's text is matched without.
var escape = regexp.MustCompile(`\x1b\[[0-9;?=]*[A-Za-z]`)

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// String is the console's text so far, without control sequences.
func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return escape.ReplaceAllString(c.buf.String(), "")
}

// Len is the length of String.
func (c *console) Len() int {
	return len(c.String())
}

// await waits until the text from offset from on matches re; it gives up when ctx ends or qemu exits.
func (c *console) await(ctx context.Context, re *regexp.Regexp, from int) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if s := c.String(); re.MatchString(s[from:]) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%q not seen: %w", re, ctx.Err())
		case <-c.exited:
			if re.MatchString(c.String()[from:]) {
				return nil
			}
			return fmt.Errorf("%q not seen: qemu exited: %v", re, c.err)
		case <-tick.C:
		}
	}
}

// testWriter sends a command's output to the test log, line by line as it was written.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
