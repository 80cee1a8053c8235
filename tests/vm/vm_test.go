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

// guestSuites are the tests the VM runs on the kernel's ESP and xfrm interfaces, which the host's kernel may lack
// (there the end-to-end tests run on strongSwan's userspace ESP): per package, a -test.run pattern.
var guestSuites = []struct{ pkg, run string }{
	{"tests", "^(TestIPsecKernelESP|TestIPsecKernelBGP|TestIPsecESPOnTheWAN)$"},
	{"dataplane/xfrm", "^(TestTunnelsOnTheKernel|TestWatchOnTheKernel)$"},
}

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

// TestOnTheAppliancesKernel boots the appliance's kernel once and runs every guest suite in it; each guest test
// becomes a subtest here.
func TestOnTheAppliancesKernel(t *testing.T) {
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
	guest := Guest{Bin: bin, Files: map[string]string{}}
	for _, gs := range guestSuites {
		testBin := filepath.Join(dir, strings.ReplaceAll(gs.pkg, "/", "_")+".test")
		build(t, "test", "-c", "-o", testBin, "./"+gs.pkg)
		guest.Suites = append(guest.Suites, Suite{Package: gs.pkg, TestBinary: testBin, Run: gs.run})
	}
	testdata, _ := filepath.Glob(filepath.Join(repoRoot(), "ike", "awsconf", "testdata", "*.txt"))
	for _, f := range testdata {
		guest.Files["ike/awsconf/testdata/"+filepath.Base(f)] = f
	}
	img, err := LabImage(k, guest)
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
	results, exits := parseGuest(console)
	if err != nil || len(exits) != len(guestSuites) || len(results) == 0 {
		t.Fatalf("the VM did not run its tests to the end (err %v, %d of %d suites ended):\n%s", err, len(exits), len(guestSuites), console)
	}
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			t.Log(r.output)
			if !r.passed {
				t.Error("failed in the VM")
			}
		})
	}
	for suite, code := range exits {
		if code != 0 {
			t.Errorf("the VM's %s tests exited with status %d", suite, code)
		}
	}
}

type guestResult struct {
	name   string // the package, then the test: "tests/TestIPsecKernelESP"
	passed bool
	output string
}

var resultLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)

// parseGuest reads the suites' `go test -v` output from the console: the top-level tests' results, each with its
// output since its `=== RUN`, and each suite's exit status as the init script printed it.
func parseGuest(console string) ([]guestResult, map[string]int) {
	var results []guestResult
	exits := map[string]int{}
	suite := ""
	var cur strings.Builder
	for _, l := range strings.Split(console, "\n") {
		if name, ok := strings.CutPrefix(l, "TORIDE-VM: SUITE "); ok {
			suite = name
			continue
		}
		if strings.HasPrefix(l, "=== RUN   ") && !strings.Contains(l, "/") {
			cur.Reset()
		}
		cur.WriteString(l + "\n")
		if m := resultLine.FindStringSubmatch(l); m != nil {
			results = append(results, guestResult{name: suite + "/" + m[2], passed: m[1] != "FAIL", output: cur.String()})
		}
		if n, ok := strings.CutPrefix(l, "TORIDE-VM: EXIT "); ok {
			code := -1
			fmt.Sscan(n, &code)
			exits[suite] = code
		}
	}
	return results, exits
}
