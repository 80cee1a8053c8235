package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/tests/lab"
)

// initialPassword is the admin's in a new image, to be changed at the first login (images/build.sh); the test
// chooses newPassword there.
const (
	initialPassword = "toride"
	newPassword     = "Kura-gate-2468"
)

// ovmf is the UEFI firmware qemu boots the amd64 image with (Debian's ovmf package).
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// TestBootAndUpdateAmd64 builds the amd64 image once, boots its qcow2 in qemu with OVMF and reads the serial
// console: GRUB picks slot A, systemd starts torided with its state on /config, and the console's login prompt
// takes the admin with the image's initial password, toride, which must be changed there and then; the login lands
// in the toride shell, which answers `show status` and `show interfaces` from the running torided. Then the update:
// a second version of the root, installed from the first with request system image install, boots on trial and
// is kept; a broken one (its torided never comes up) boots on trial, is rebooted by toride-trial.service, and the
// appliance comes back on the previous slot by itself. The configuration committed before survives every step, and
// so does the admin's new password: every later boot logs in with it, and refuses the initial one.
// A second build of the same commit must give the same bytes. TORIDE_IMAGE, if set, names a qcow2 already built
// (its root beside it, .root.squashfs) to boot instead, with no build.
func TestBootAndUpdateAmd64(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "qemu-img", "mmdebstrap", "unsquashfs", "mksquashfs")
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
		checkReproducible(t, top, filepath.Join(top, "images/out"))
	}
	dir := t.TempDir()
	version, update, broken := updateImages(t, strings.TrimSuffix(image, ".qcow2")+".root.squashfs", dir)

	// The boot writes to the disk (/config, the other slot, grubenv) and the firmware's variables: both go to copies.
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

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	// The two update images are disks of their own, /dev/vdb and /dev/vdc, as a USB stick would be.
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "1024", "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "if=virtio,format=qcow2,file="+disk,
		"-drive", "if=virtio,format=raw,readonly=on,file="+update.path,
		"-drive", "if=virtio,format=raw,readonly=on,file="+broken.path,
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
	// await waits for re in the console's text from offset from on, for 4 minutes at most (a TCG boot takes
	// about 30 s, a trial that is not kept 90 s more).
	await := func(what string, re string, from int) {
		t.Helper()
		actx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		if err := con.await(actx, regexp.MustCompile(re), from); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// run types a command and waits for the prompt after its answer, which it returns.
	run := func(command string) string {
		t.Helper()
		mark := con.Len()
		if _, err := io.WriteString(stdin, command+"\r"); err != nil {
			t.Fatal(err)
		}
		// The line editor redraws the line as it is typed and once more at Enter: the answer is over at the
		// first prompt that starts a line after the command's own.
		await(command, `(?s)`+regexp.QuoteMeta(command)+`[^\n]*\n(.*\n)?\r?toride(\(config\*?\)#|>) `, mark)
		return con.String()[mark:]
	}
	// expect waits for re in the console's text from offset from on, and returns the offset just after it.
	expect := func(what string, re string, from int) int {
		t.Helper()
		await(what, re, from)
		return from + regexp.MustCompile(re).FindStringIndex(con.String()[from:])[1]
	}
	// answer waits for the prompt re after from, types line, and returns the offset after the prompt.
	answer := func(prompt string, re string, line string, from int) int {
		t.Helper()
		from = expect(prompt, re, from)
		if _, err := io.WriteString(stdin, line+"\r"); err != nil {
			t.Fatal(err)
		}
		return from
	}
	// bootOf waits for a boot of slot (on trial or not) to reach the console's login prompt, and returns where
	// this boot's output starts.
	bootOf := func(slot string, trial bool, from int) int {
		t.Helper()
		arg := `toride\.slot=` + slot + ` +panic`
		if trial {
			arg = `toride\.slot=` + slot + ` toride\.trial=1`
		}
		// What follows is this boot's, not what the shell printed before it went down.
		from = expect("the kernel of slot "+slot, `Command line:.*`+arg, from)
		await("the login prompt", `login: `, from)
		return from
	}
	// logIn answers this boot's login prompt (from on) as the admin with password, and returns the offset after
	// the password prompt.
	logIn := func(password string, from int) int {
		t.Helper()
		from = answer("the login prompt", `login: `, "admin", from)
		return answer("the password prompt", `Password: `, password, from)
	}
	// shell waits for this boot's torided and the toride shell the login lands in.
	shell := func(from int) {
		t.Helper()
		await("torided", `Started torided\.service`, from)
		await("the shell", `toride> `, from)
	}
	// imageShows waits until show system image has every line of want (torided keeps a trial at its start).
	imageShows := func(want ...string) string {
		t.Helper()
		var out string
		for deadline := time.Now().Add(time.Minute); ; {
			out = run("show system image")
			missing := slices.ContainsFunc(want, func(w string) bool { return !regexp.MustCompile(w).MatchString(out) })
			if !missing {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("show system image lacks one of %q:\n%s", want, out)
			}
			time.Sleep(2 * time.Second)
		}
	}

	// The first boot: the image's password is accepted once, expired, and a new one must be chosen at once.
	from := bootOf("a", false, 0)
	t.Logf("time to the login prompt: %s (TCG)", time.Since(booted).Round(time.Second))
	at := logIn(initialPassword, from)
	at = expect("the forced change", `You are required to change your password immediately`, at)
	at = answer("the current password", `Current password: `, initialPassword, at)
	at = answer("the new password", `New password: `, newPassword, at)
	answer("the new password again", `Retype new password: `, newPassword, at)
	shell(from)
	t.Logf("time to prompt: %s (TCG), the password changed at the first login", time.Since(booted).Round(time.Second))
	if out := run("show status"); !strings.Contains(out, `"version"`) {
		t.Fatalf("show status did not answer:\n%s", out)
	}
	// The embedded default takes eth0's address by DHCP: qemu's user network gives 10.0.2.15/24.
	for try := 0; ; try++ {
		out := run("show interfaces")
		if regexp.MustCompile(`eth0 +up .* 10\.0\.2\.15/24`).MatchString(out) {
			break
		}
		if try == 15 {
			t.Fatalf("show interfaces never showed eth0 with its DHCP address:\n%s", out)
		}
		time.Sleep(2 * time.Second)
	}
	imageShows(`A +`+regexp.QuoteMeta(version)+` +running, default`, `B +- +-`)
	run("configure")
	run("set system host-name update-test")
	if out := run("commit"); !strings.Contains(out, "Committed revision") {
		t.Fatalf("commit:\n%s", out)
	}
	run("exit")
	marker := "set system host-name 'update-test'"

	// A new version: installed into slot B, tried at the next boot, kept once torided is up.
	if out := run("request system image install /dev/vdb " + update.sum); !strings.Contains(out, "Installed "+update.version+" into slot b") {
		t.Fatalf("install:\n%s", out)
	}
	imageShows(`B +` + regexp.QuoteMeta(update.version) + ` +next boot, on trial`)
	mark := con.Len()
	rebooted := time.Now()
	if _, err := io.WriteString(stdin, "request system reboot\r"); err != nil {
		t.Fatal(err)
	}
	// The new password was kept on /config: the initial one is refused, the new one taken.
	from = bootOf("b", true, mark)
	at = logIn(initialPassword, from)
	at = expect("the initial password refused", `Login incorrect`, at)
	logIn(newPassword, at)
	shell(from)
	imageShows(`A +`+regexp.QuoteMeta(version)+` +-`, `B +`+regexp.QuoteMeta(update.version)+` +running, default`)
	t.Logf("update: reboot → new image kept: %s", time.Since(rebooted).Round(time.Second))
	if out := run("show configuration commands"); !strings.Contains(out, marker) {
		t.Fatalf("the configuration did not survive the update:\n%s", out)
	}

	// A broken version (its torided exits at once): tried once, not kept, and the appliance comes back on B.
	if out := run("request system image install /dev/vdc " + broken.sum); !strings.Contains(out, "Installed "+broken.version+" into slot a") {
		t.Fatalf("install:\n%s", out)
	}
	mark = con.Len()
	rebooted = time.Now()
	if _, err := io.WriteString(stdin, "request system reboot\r"); err != nil {
		t.Fatal(err)
	}
	await("the broken image on trial", `Command line:.*toride\.slot=a toride\.trial=1`, mark)
	await("toride-trial.service giving up", `did not come up healthy`, mark)
	from = bootOf("b", false, con.Len())
	logIn(newPassword, from)
	shell(from)
	imageShows(`A +`+regexp.QuoteMeta(broken.version)+` +-`, `B +`+regexp.QuoteMeta(update.version)+` +running, default`)
	t.Logf("broken update: reboot → back on the previous image: %s", time.Since(rebooted).Round(time.Second))
	if out := run("show configuration commands"); !strings.Contains(out, marker) {
		t.Fatalf("the configuration did not survive the failed update:\n%s", out)
	}
}

// checkReproducible builds the image a second time, elsewhere, and requires the same bytes: the root (the update
// file) and the raw disk.
func checkReproducible(t *testing.T, top, first string) {
	t.Helper()
	began := time.Now()
	second := t.TempDir()
	build := exec.Command(filepath.Join(top, "images/build.sh"), "amd64")
	build.Env = append(os.Environ(), "TORIDE_IMAGE_OUT="+second)
	build.Stdout, build.Stderr = testWriter{t}, testWriter{t}
	if err := build.Run(); err != nil {
		t.Fatalf("the second build: %v", err)
	}
	for _, f := range []string{"toride-amd64.root.squashfs", "toride-amd64.img"} {
		if a, b := fileSum(t, filepath.Join(first, f)), fileSum(t, filepath.Join(second, f)); a != b {
			t.Errorf("%s: two builds of the same commit differ (SHA-256 %s and %s)", f, a, b)
		}
	}
	t.Logf("a second build, %s, gave the same root and disk", time.Since(began).Round(time.Second))
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// updateImage is a root image to install: its file, SHA-256 and version.
type updateImage struct{ path, sum, version string }

// updateImages makes, from the built root, a second version and a broken one (its torided exits at once); gzip
// level 1 keeps it to seconds. It returns the built root's version.
func updateImages(t *testing.T, root, dir string) (string, updateImage, updateImage) {
	t.Helper()
	tree := filepath.Join(dir, "root")
	if out, err := exec.Command("unsquashfs", "-q", "-no-progress", "-d", tree, root).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v: %s", err, out)
	}
	defer os.RemoveAll(tree)
	raw, err := os.ReadFile(filepath.Join(tree, "usr/lib/toride/version"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(raw))
	variant := func(name string) updateImage {
		v := version + "-" + name
		if err := os.WriteFile(filepath.Join(tree, "usr/lib/toride/version"), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".squashfs")
		if out, err := exec.Command("mksquashfs", tree, p, "-comp", "gzip", "-Xcompression-level", "1", "-noappend",
			"-quiet", "-no-progress").CombinedOutput(); err != nil {
			t.Fatalf("mksquashfs: %v: %s", err, out)
		}
		return updateImage{path: p, sum: fileSum(t, p), version: v}
	}
	update := variant("update")
	if err := os.WriteFile(filepath.Join(tree, "usr/sbin/torided"), []byte("#!/bin/sh\necho broken on purpose >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return version, update, variant("broken")
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
