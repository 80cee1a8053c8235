package images

import (
	"context"
	"path/filepath"
	"strings"
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
// (ttyAMA0): GRUB picks slot A, the initramfs finds it by its PARTUUID and mounts it (and /etc's overlay), systemd
// starts torided with its state on /config, and the admin logs in with the image's initial password, which must be
// changed there and then, to the toride shell, which answers `show status` and `show interfaces` (eth0's DHCP
// address) from the running torided; then the shell powers the appliance off. It reports the time to the prompt.
// A second build of the same commit must give the same bytes. The A/B update is amd64's test's
// (TestBootAndUpdateAmd64): the same scripts.
// TORIDE_IMAGE_ARM64, if set, names a qcow2 already built to boot instead, with no build.
func TestBootArm64(t *testing.T) {
	lab.Require(t, "qemu-system-aarch64", "qemu-img", "mmdebstrap", "mksquashfs", "cpio")
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	image, built := buildImage(t, top, "arm64")
	if built {
		checkReproducible(t, top, "arm64", filepath.Dir(image))
	}
	disk, vars := machineFiles(t, t.TempDir(), image, aavmfVars)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// TCG: -cpu max with the cheaper pointer authentication of qemu's own (the architected one is slow to emulate).
	booted := time.Now()
	g := startGuest(t, ctx, initialPassword, "qemu-system-aarch64",
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
	g.await("the login prompt", `login: `, mark, 5*time.Minute)
	t.Logf("time to the login prompt: %s (TCG; the kernel started after %s)", time.Since(booted).Round(time.Second), kernel.Round(time.Second))
	g.login(mark, 5*time.Minute)
	if g.password != newPassword {
		t.Fatal("the first login did not require the initial password changed")
	}
	g.await("torided", `Started torided\.service`, mark, 5*time.Minute)
	t.Logf("time to prompt: %s (TCG), the password changed at the first login", time.Since(booted).Round(time.Second))

	if out := g.run("show status"); !strings.Contains(out, `"version"`) {
		t.Fatalf("show status did not answer:\n%s", out)
	}
	g.leased()
	g.powerOff()
}
