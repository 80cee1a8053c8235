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

	"toride/tests/lab"
)

// ovmf is the UEFI firmware qemu boots the amd64 image with (Debian's ovmf package).
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// TestBootAmd64 builds the amd64 image once, boots its qcow2 in qemu with OVMF and reads the serial console: GRUB
// picks slot A, systemd starts torided with its state on /config, and the console's autologin lands in the toride
// shell, which answers `show status` from the running torided. TORIDE_IMAGE, if set, names a qcow2 already built
// to boot instead.
func TestBootAmd64(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "qemu-img", "mmdebstrap")
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v (tests/deps.sh image installs ovmf)", err)
		}
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	image := os.Getenv("TORIDE_IMAGE")
	if image == "" {
		began := time.Now()
		build := exec.Command("make", "--no-print-directory", "-C", top, "image", "ARCH=amd64")
		build.Stdout, build.Stderr = testWriter{t}, testWriter{t}
		if err := build.Run(); err != nil {
			t.Fatalf("make image: %v", err)
		}
		t.Logf("image built in %s", time.Since(began).Round(time.Second))
		image = filepath.Join(top, "images/out/toride-amd64.qcow2")
	}

	// The boot writes to the disk (/config) and the firmware's variables: both go to copies.
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
		"-b", image, disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if raw, err := os.ReadFile(ovmfVars); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(vars, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "1024", "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "if=virtio,format=qcow2,file="+disk,
		"-nic", "user,model=virtio-net-pci")
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	con := &console{exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = con, con
	booted := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		con.err = cmd.Wait()
		close(con.exited)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-con.exited
		if t.Failed() {
			t.Logf("serial console:\n%s", con.String())
		}
	}()

	// The console's autologin may reach the shell before torided serves its socket: wait for both.
	if err := con.await(ctx, regexp.MustCompile(`Started torided\.service`), 0); err != nil {
		t.Fatalf("torided never started: %v", err)
	}
	if err := con.await(ctx, regexp.MustCompile(`toride> `), 0); err != nil {
		t.Fatalf("no toride shell on the console: %v", err)
	}
	t.Logf("time to prompt: %s (TCG)", time.Since(booted).Round(time.Second))

	mark := con.Len()
	if _, err := io.WriteString(stdin, "show status\r"); err != nil {
		t.Fatal(err)
	}
	if err := con.await(ctx, regexp.MustCompile(`(?s)"version":.*toride> `), mark); err != nil {
		t.Fatalf("show status did not answer: %v", err)
	}
	t.Logf("show status:\n%s", strings.TrimSpace(con.String()[mark:]))
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
