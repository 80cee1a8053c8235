package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"toride/tests/lab"
)

// aavmf is the UEFI firmware qemu boots the arm64 image with (Debian's qemu-efi-aarch64 package).
const (
	aavmfCode = "/usr/share/AAVMF/AAVMF_CODE.fd"
	aavmfVars = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// TestBootArm64 builds the arm64 image (its packages unpacked, never run on the build machine, and an initramfs
// of its own), boots its qcow2 in qemu's emulated arm64 virt machine with AAVMF and reads the serial console
// (ttyAMA0): GRUB picks slot A, the initramfs finds it by its PARTUUID and mounts it, systemd starts torided with its
// state on /config, and the console logs in to the toride shell, which answers `show status` and `show
// interfaces` from the running torided. It reports the time to the prompt, then ends the machine (the shell has no
// power-off). The A/B update and the second build are amd64's test's (TestBootAndUpdateAmd64): the same scripts.
// TORIDE_IMAGE_ARM64, if set, names a qcow2 already built to boot instead, with no build.
func TestBootArm64(t *testing.T) {
	lab.Require(t, "qemu-system-aarch64", "qemu-img", "mmdebstrap", "mksquashfs", "cpio")
	for _, f := range []string{aavmfCode, aavmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v (tests/deps.sh image installs qemu-efi-aarch64)", err)
		}
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	image := os.Getenv("TORIDE_IMAGE_ARM64")
	if image == "" {
		began := time.Now()
		build := exec.Command("make", "--no-print-directory", "-C", top, "image", "ARCH=arm64")
		build.Stdout, build.Stderr = testWriter{t}, testWriter{t}
		if err := build.Run(); err != nil {
			t.Fatalf("make image ARCH=arm64: %v", err)
		}
		t.Logf("image built in %s", time.Since(began).Round(time.Second))
		image = filepath.Join(top, "images/out/toride-arm64.qcow2")
	}
	dir := t.TempDir()
	// The boot writes to the disk (/config) and the firmware's variables: both go to copies.
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
		"-b", image, disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	vars := filepath.Join(dir, "AAVMF_VARS.fd")
	firmwareVars(t, aavmfVars, vars)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// TCG: -cpu max with the cheaper pointer authentication of qemu's own (the architected one is slow to emulate).
	booted := time.Now()
	g := startGuest(t, ctx, "qemu-system-aarch64",
		"-accel", "tcg", "-machine", "virt", "-cpu", "max,pauth-impdef=on", "-m", "1024", "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-drive", "if=pflash,format=raw,readonly=on,file="+aavmfCode,
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "if=virtio,format=qcow2,file="+disk,
		"-nic", "user,model=virtio-net-pci")

	mark := g.await("GRUB", `Booting .Toride \(slot A\)`, 0, 3*time.Minute)
	mark = g.await("the kernel of slot A", `(?i)command line:.*root=PARTUUID=\S+ .*console=ttyAMA0,115200 toride\.slot=a +panic`, mark, 2*time.Minute)
	kernel := time.Since(booted)
	mark = g.await("the root slot", `initramfs: root PARTUUID=\S+ is /dev/vda2`, mark, 3*time.Minute)
	g.await("torided", `Started torided\.service`, mark, 5*time.Minute)
	g.login(mark, 5*time.Minute)
	t.Logf("time to prompt: %s (TCG; the kernel started after %s)", time.Since(booted).Round(time.Second), kernel.Round(time.Second))

	if out := g.run("show status"); !strings.Contains(out, `"version"`) {
		t.Fatalf("show status did not answer:\n%s", out)
	}
	if out := g.run("show interfaces"); !regexp.MustCompile(`eth0 +up`).MatchString(out) {
		t.Fatalf("show interfaces:\n%s", out)
	}

	// Off: qemu ends the machine on SIGTERM.
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.con.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("qemu did not end on SIGTERM")
	}
}
