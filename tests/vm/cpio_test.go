package vm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"toride/tests/lab"
)

// An archive of a directory, a file and a symbolic link unpacks (with busybox's cpio, as the kernel's unpacker
// reads the same format) to exactly those.
func TestCPIOUnpacks(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		if lab.Required() {
			t.Fatal("busybox is not installed (tests/deps.sh test installs busybox-static)")
		}
		t.Skip("busybox is not installed (tests/deps.sh test installs busybox-static)")
	}
	var buf bytes.Buffer
	c := newCPIO(&buf)
	for _, err := range []error{c.Dir("etc"), c.File("etc/odd", 0o640, []byte("five\n")), c.File("etc/empty", 0o600, nil),
		c.Symlink("etc/link", "odd"), c.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive of %d bytes is not padded to four", buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command(busybox, "cpio", "-i", "-d")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "etc", "odd")); err != nil || string(data) != "five\n" {
		t.Errorf("etc/odd = %q, %v", data, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "etc", "odd")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("etc/odd's mode: %v, %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "etc", "empty")); err != nil || st.Size() != 0 {
		t.Errorf("etc/empty: %v, %v", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "etc", "link")); err != nil || target != "odd" {
		t.Errorf("etc/link → %q, %v", target, err)
	}
}

func TestParseGuest(t *testing.T) {
	console := `[    1.0] booting
TORIDE-VM: BOOTED 6.1.0
TORIDE-VM: SUITE tests
=== RUN   TestA
    a_test.go:1: hello
--- PASS: TestA (1.00s)
=== RUN   TestB
=== RUN   TestB/sub
    b_test.go:2: broken
    --- FAIL: TestB/sub (0.10s)
--- FAIL: TestB (0.20s)
FAIL
TORIDE-VM: EXIT 1
TORIDE-VM: SUITE dataplane/xfrm
=== RUN   TestC
--- PASS: TestC (0.20s)
TORIDE-VM: EXIT 0
[    9.0] reboot: Power down`
	results, exits := parseGuest(console)
	if len(exits) != 2 || exits["tests"] != 1 || exits["dataplane/xfrm"] != 0 || len(results) != 3 {
		t.Fatalf("exits %v, results %+v", exits, results)
	}
	if r := results[0]; r.name != "tests/TestA" || !r.passed || !strings.Contains(r.output, "hello") {
		t.Errorf("TestA: %+v", r)
	}
	if r := results[1]; r.name != "tests/TestB" || r.passed || !strings.Contains(r.output, "broken") {
		t.Errorf("TestB: %+v", r)
	}
	if r := results[2]; r.name != "dataplane/xfrm/TestC" || !r.passed {
		t.Errorf("TestC: %+v", r)
	}
	if _, exits := parseGuest("TORIDE-VM: SUITE tests\n[ 3.0] Kernel panic"); len(exits) != 0 {
		t.Errorf("a suite with no exit line read as ended: %v", exits)
	}
}

func TestLddPathsAndModuleNames(t *testing.T) {
	out := []byte("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n")
	got := lddPaths(out)
	if len(got) != 2 || got[0] != "/lib/x86_64-linux-gnu/libc.so.6" || got[1] != "/lib64/ld-linux-x86-64.so.2" {
		t.Errorf("lddPaths = %q", got)
	}
	for in, want := range map[string]string{"kernel/net/ipv4/esp4.ko": "esp4", "kernel/crypto/jitterentropy_rng.ko": "jitterentropy_rng",
		"kernel/drivers/net/xen-netfront.ko.xz": "xen_netfront"} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}
