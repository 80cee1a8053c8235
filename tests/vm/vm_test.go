package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
)

// guestTests are the end-to-end tests of package tests that the VM runs on the kernel's ESP (kernel-netlink),
// where the host runs them on strongSwan's userspace ESP.
const guestTests = "^(TestIPsecKernelESP)$"

func repoRoot() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..")
}

// build runs go with CGO off (static binaries: the guest has no libc of Go's choosing) in the repository.
func build(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestKernelESP boots the appliance kernel and runs the end-to-end IPsec tests in it: both tunnels up over the
// kernel's ESP, LAN-to-LAN traffic, failover when the active gateway dies.
func TestKernelESP(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if lab.Required() {
			t.Fatal("qemu-system-x86_64 is not installed (tests/deps.sh test installs it)")
		}
		t.Skip("qemu-system-x86_64 is not installed")
	}
	k, err := FindKernel(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := map[string]string{}
	for _, name := range []string{"torided", "toride"} {
		bin[name] = filepath.Join(dir, name)
		build(t, "build", "-o", bin[name], "./cmd/"+name)
	}
	testBin := filepath.Join(dir, "tests.test")
	build(t, "test", "-c", "-o", testBin, "./tests")
	files := map[string]string{}
	testdata, _ := filepath.Glob(filepath.Join(repoRoot(), "ike", "awsconf", "testdata", "*.txt"))
	for _, f := range testdata {
		files["ike/awsconf/testdata/"+filepath.Base(f)] = f
	}
	img, err := LabImage(k, Guest{TestBinary: testBin, Run: guestTests, Bin: bin, Files: files, Dir: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := img.Write(initrd); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var booted time.Duration
	console, err := Machine{Kernel: k.Vmlinuz(), Initramfs: initrd, Cmdline: "quiet"}.Run(ctx, func(l string) {
		if strings.HasPrefix(l, "TORIDE-VM: BOOTED") {
			booted = time.Since(start)
		}
	})
	t.Logf("VM: booted in %v, ran for %v (%s)", booted.Round(100*time.Millisecond), time.Since(start).Round(time.Second), strings.Join(accelArgs, " "))
	results, exit := parseGuest(console)
	if err != nil || exit != 0 || len(results) == 0 {
		t.Fatalf("the VM's tests did not pass (err %v, exit status %d):\n%s", err, exit, console)
	}
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			t.Log(r.output)
			if !r.passed {
				t.Error("failed in the VM")
			}
		})
	}
}

type guestResult struct {
	name   string
	passed bool
	output string
}

var resultLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)

// parseGuest reads `go test -v` output from the console: the top-level tests' results, each with the output
// since its `=== RUN`, and the exit status the init script printed (-1 when it printed none).
func parseGuest(console string) ([]guestResult, int) {
	var results []guestResult
	exit := -1
	var cur strings.Builder
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(l, "=== RUN   ") && !strings.Contains(l, "/") {
			cur.Reset()
		}
		cur.WriteString(l + "\n")
		if m := resultLine.FindStringSubmatch(l); m != nil {
			results = append(results, guestResult{name: m[2], passed: m[1] != "FAIL", output: cur.String()})
		}
		if n, ok := strings.CutPrefix(l, "TORIDE-VM: EXIT "); ok {
			fmt.Sscan(n, &exit)
		}
	}
	return results, exit
}
