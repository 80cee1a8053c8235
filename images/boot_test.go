package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
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
// appliance comes back on the previous slot by itself. qemu ends at each reboot (-no-reboot) and starts again on
// the same disk, so that the test reads the config partition between boots: every step leaves its files as they
// were, byte for byte, the committed configuration and the admin's new password with them (every later boot logs
// in with it, and refuses the initial one). A second build of the same commit must give the same bytes.
// TORIDE_IMAGE, if set, names a qcow2 already built (its root beside it, .root.squashfs) to boot instead.
func TestBootAndUpdateAmd64(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "qemu-img", "mmdebstrap", "unsquashfs", "mksquashfs", "sfdisk", "debugfs")
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	image, built := buildImage(t, top, "amd64")
	if built {
		checkReproducible(t, top, "amd64", filepath.Dir(image))
	}
	dir := t.TempDir()
	version, update, broken := updateImages(t, strings.TrimSuffix(image, ".qcow2")+".root.squashfs", dir)
	disk, vars := machineFiles(t, dir, image, ovmfVars)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// boot starts the machine again on the same disk. The two update images are disks of their own, /dev/vdb and
	// /dev/vdc, as a USB stick would be.
	boot := func(password string) *guest {
		return startGuest(t, ctx, password, "qemu-system-x86_64",
			"-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "1024", "-smp", "2", "-no-reboot",
			"-display", "none", "-monitor", "none", "-serial", "stdio",
			"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,file="+vars,
			"-drive", "if=virtio,format=qcow2,file="+disk,
			"-drive", "if=virtio,format=raw,readonly=on,file="+update.path,
			"-drive", "if=virtio,format=raw,readonly=on,file="+broken.path,
			"-nic", "user,model=virtio-net-pci")
	}
	// bootOf waits for a boot of slot (on trial or not) to reach the console's login prompt (a TCG boot takes
	// about 30 s, a trial that is not kept 90 s more), and returns where the boot's kernel command line ends.
	bootOf := func(g *guest, slot string, trial bool) int {
		t.Helper()
		arg := `toride\.slot=` + slot + ` +panic`
		if trial {
			arg = `toride\.slot=` + slot + ` toride\.trial=1`
		}
		// What follows is this boot's, not what the shell printed before it went down.
		from := g.await("the kernel of slot "+slot, `Command line:.*`+arg, 0, 4*time.Minute)
		g.await("the login prompt", `login: `, from, 4*time.Minute)
		return from
	}
	// logIn answers the login prompt (from on) as the admin with password, and returns the offset after the
	// password prompt.
	logIn := func(g *guest, password string, from int) int {
		t.Helper()
		from = g.answer("the login prompt", `login: `, "admin", from)
		return g.answer("the password prompt", `Password: `, password, from)
	}
	// shell waits for this boot's torided and the toride shell the login lands in.
	shell := func(g *guest, from int) {
		t.Helper()
		g.await("torided", `Started torided\.service`, 0, 4*time.Minute)
		g.await("the shell", `toride> `, from, 4*time.Minute)
	}
	// imageShows waits until show system image has every line of want (torided keeps a trial at its start).
	imageShows := func(g *guest, want ...string) string {
		t.Helper()
		var out string
		for deadline := time.Now().Add(time.Minute); ; {
			out = g.run("show system image")
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
	// reboot has the shell reboot the appliance, waits until qemu has ended, and returns the config partition's
	// files as that boot left them.
	reboot := func(g *guest) map[string]string {
		t.Helper()
		g.send("request system reboot")
		g.ended("request system reboot", 2*time.Minute)
		return configFiles(t, disk, dir)
	}
	const marker = "set system host-name 'update-test'"
	configured := func(g *guest, step string) {
		t.Helper()
		if out := g.run("show configuration commands"); !strings.Contains(out, marker) {
			t.Fatalf("the configuration did not survive %s:\n%s", step, out)
		}
	}

	// The first boot: the image's password is accepted once, expired, and a new one must be chosen at once.
	booted := time.Now()
	g := boot(initialPassword)
	from := bootOf(g, "a", false)
	t.Logf("time to the login prompt: %s (TCG)", time.Since(booted).Round(time.Second))
	at := logIn(g, initialPassword, from)
	at = g.await("the forced change", `You are required to change your password immediately`, at, time.Minute)
	at = g.answer("the current password", `Current password: `, initialPassword, at)
	at = g.answer("the new password", `New password: `, newPassword, at)
	g.answer("the new password again", `Retype new password: `, newPassword, at)
	shell(g, from)
	t.Logf("time to prompt: %s (TCG), the password changed at the first login", time.Since(booted).Round(time.Second))
	if out := g.run("show status"); !strings.Contains(out, `"version"`) {
		t.Fatalf("show status did not answer:\n%s", out)
	}
	g.leased()
	imageShows(g, `A +`+regexp.QuoteMeta(version)+` +running, default`, `B +- +-`)
	g.run("configure")
	g.run("set system host-name update-test")
	if out := g.run("commit"); !strings.Contains(out, "Committed revision") {
		t.Fatalf("commit:\n%s", out)
	}
	g.run("exit")

	// A new version: installed into slot B, tried at the next boot, kept once torided is up.
	if out := g.run("request system image install /dev/vdb " + update.sum); !strings.Contains(out, "Installed "+update.version+" into slot b") {
		t.Fatalf("install:\n%s", out)
	}
	imageShows(g, `B +`+regexp.QuoteMeta(update.version)+` +next boot, on trial`)
	before := reboot(g)
	if _, ok := before["auth/admin.shadow"]; !ok {
		t.Fatalf("the admin's new password is not on the config partition: %v", slices.Sorted(maps.Keys(before)))
	}
	// The new password was kept on /config: the initial one is refused, the new one taken.
	rebooted := time.Now()
	g = boot(newPassword)
	from = bootOf(g, "b", true)
	at = logIn(g, initialPassword, from)
	at = g.await("the initial password refused", `Login incorrect`, at, time.Minute)
	logIn(g, newPassword, at)
	shell(g, from)
	imageShows(g, `A +`+regexp.QuoteMeta(version)+` +-`, `B +`+regexp.QuoteMeta(update.version)+` +running, default`)
	t.Logf("update: reboot → new image kept: %s", time.Since(rebooted).Round(time.Second))
	configured(g, "the update")

	// A broken version (its torided exits at once): tried once, not kept, and the appliance comes back on B.
	if out := g.run("request system image install /dev/vdc " + broken.sum); !strings.Contains(out, "Installed "+broken.version+" into slot a") {
		t.Fatalf("install:\n%s", out)
	}
	after := reboot(g)
	sameFiles(t, "booting the update, keeping it and installing another", before, after)
	before = after
	rebooted = time.Now()
	g = boot(newPassword)
	g.await("the broken image on trial", `Command line:.*toride\.slot=a toride\.trial=1`, 0, 4*time.Minute)
	g.await("toride-trial.service giving up", `did not come up healthy`, 0, 4*time.Minute)
	g.ended("the trial's reboot", 2*time.Minute)
	after = configFiles(t, disk, dir)
	sameFiles(t, "the broken image's trial", before, after)
	before = after
	g = boot(newPassword)
	from = bootOf(g, "b", false)
	logIn(g, newPassword, from)
	shell(g, from)
	imageShows(g, `A +`+regexp.QuoteMeta(broken.version)+` +-`, `B +`+regexp.QuoteMeta(update.version)+` +running, default`)
	t.Logf("broken update: reboot → back on the previous image: %s", time.Since(rebooted).Round(time.Second))
	configured(g, "the failed update")
	g.powerOff()
	sameFiles(t, "the boot back on the previous image", before, configFiles(t, disk, dir))
}

// configFiles reads the config partition (the 4th) of a machine's disk while it is off: every file's and
// directory's mode and, for files, the SHA-256 of its bytes, by its path.
func configFiles(t *testing.T, disk, dir string) map[string]string {
	t.Helper()
	raw := filepath.Join(dir, "disk.raw")
	defer os.Remove(raw)
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	out, err := exec.Command("sfdisk", "--json", raw).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var table struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start, Size int64
				Name        string
			}
		}
	}
	if err := json.Unmarshal(out, &table); err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	pt := table.PartitionTable
	if len(pt.Partitions) != 4 || pt.Partitions[3].Name != "config" {
		t.Fatalf("the disk's partitions: %s", out)
	}
	p := pt.Partitions[3]
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	part := filepath.Join(dir, "config.img")
	defer os.Remove(part)
	w, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, p.Start*pt.SectorSize, p.Size*pt.SectorSize)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "config")
	defer os.RemoveAll(tree)
	if err := os.Mkdir(tree, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("debugfs", "-R", "rdump / "+tree, part).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v: %s", err, out)
	}
	files := map[string]string{}
	err = filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == tree {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, path)
		files[rel] = info.Mode().String()
		if info.Mode().IsRegular() {
			files[rel] += " " + fileSum(t, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// typed is what the admin's own typing changes on the config partition: the toride shell's history, kept there so
// that it survives reboots and updates like the rest of the admin's state.
var typed = map[string]bool{"home/admin/.toride_history": true}

// sameFiles requires step to have left the config partition's files as they were, but for what the admin typed.
func sameFiles(t *testing.T, step string, before, after map[string]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if typed[name] {
			continue
		}
		if a, ok := after[name]; !ok {
			t.Errorf("%s removed /config/%s", step, name)
		} else if a != before[name] {
			t.Errorf("%s changed /config/%s: %s, was %s", step, name, a, before[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[name]; !ok {
			t.Errorf("%s added /config/%s", step, name)
		}
	}
	if !t.Failed() {
		t.Logf("%s left the config partition's %d files and directories as they were", step, len(before))
	}
}

// checkReproducible builds the image a second time, elsewhere, and requires the same bytes: the root (the update
// file) and the raw disk.
func checkReproducible(t *testing.T, top, arch, first string) {
	t.Helper()
	began := time.Now()
	second := t.TempDir()
	build := exec.Command(filepath.Join(top, "images/build.sh"), arch)
	build.Env = append(os.Environ(), "TORIDE_IMAGE_OUT="+second)
	build.Stdout, build.Stderr = testWriter{t}, testWriter{t}
	if err := build.Run(); err != nil {
		t.Fatalf("the second build: %v", err)
	}
	for _, f := range []string{"toride-" + arch + ".root.squashfs", "toride-" + arch + ".img"} {
		if a, b := fileSum(t, filepath.Join(first, f)), fileSum(t, filepath.Join(second, f)); a != b {
			t.Errorf("%s: two builds of the same commit differ (SHA-256 %s and %s)", f, a, b)
		}
	}
	t.Logf("a second %s build, %s, gave the same root and disk", arch, time.Since(began).Round(time.Second))
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
