package images

import (
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// guest is an image booted in qemu, driven through its serial console: what the console printed (con) and its
// keyboard (qemu's standard input). Not safe for concurrent use: one test drives it.
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
// the test ends; if the test failed, the console's text goes to its log.
func startGuest(t *testing.T, ctx context.Context, qemu string, args ...string) *guest {
	t.Helper()
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{t: t, ctx: ctx, cmd: cmd, con: &console{exited: make(chan struct{})}, stdin: stdin, password: "toride"}
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
			t.Logf("serial console:\n%s", g.con.String())
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

// newPassword is what login sets when the console requires the admin's initial password to be changed.
const newPassword = "Fortress-9-gate"

// login takes the console, from offset from on, to the toride shell: the console's autologin lands there by
// itself; a login prompt gets the admin's name and password (toride at first, which the console may require to
// be changed at once: then newPassword), and it is the toride prompt that ends it. It returns the offset past the
// prompt.
func (g *guest) login(from int, within time.Duration) int {
	g.t.Helper()
	// The prompt, or what the console can ask on the way: that at the end of the text so far, since the autologin's
	// line is "toride login: admin (automatic login)".
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

// firmwareVars copies a UEFI firmware's variable store for one boot to write to.
func firmwareVars(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
