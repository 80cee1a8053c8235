// Package toridetest runs the real torided and toride binaries for end-to-end tests: torided inside a lab network
// namespace (and its own UTS namespace, so setting the host name touches nothing outside), toride against its
// socket.
//
// Call Main from the test package's TestMain: it builds both binaries once for the package.
package toridetest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/appliance/api"
	"toride/tests/lab"
)

var binDir string

// Main builds the binaries, runs the tests and removes the binaries. torided is built with the race detector,
// except when benchmarks run: they measure speed, which the race detector would distort.
func Main(m *testing.M) {
	flag.Parse()
	if dir := os.Getenv("TORIDE_BIN_DIR"); dir != "" {
		// Built beforehand, for a machine with no Go toolchain (the VM tier's guests).
		binDir = dir
		os.Exit(m.Run())
	}
	race := true
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		race = false
	}
	dir, err := os.MkdirTemp("", "toride-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	root := repoRoot()
	for _, name := range []string{"torided", "toride"} {
		args := []string{"build", "-o", filepath.Join(dir, name), "./cmd/" + name}
		if name == "torided" && race {
			args = append(args[:1], append([]string{"-race"}, args[1:]...)...) // the daemon is what races could hide in
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", name, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Bin returns the path of a built binary.
func Bin(name string) string { return filepath.Join(binDir, name) }

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Build builds the command in pkg (a package path from the repository root, "./tests/flood") once per test
// binary, with the race detector when race is set, and returns the binary's path.
func Build(t testing.TB, pkg string, race bool) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := fmt.Sprintf("%s race=%v", pkg, race)
	if path, ok := built[key]; ok {
		return path
	}
	path := filepath.Join(binDir, fmt.Sprintf("%s-%d", filepath.Base(pkg), len(built)))
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	built[key] = path
	return path
}

func repoRoot() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..")
}

// Daemon is one torided running in a lab namespace.
type Daemon struct {
	t        testing.TB
	NS       *lab.Netns
	StateDir string
	Socket   string
	Proc     *lab.Process
	API      *api.Client
}

// Start runs torided in ns with its state in stateDir and waits until its API answers (10 s at most). extra
// flags come after the defaults, so they override them ("--log-level", "info").
func Start(t testing.TB, ns *lab.Netns, stateDir string, extra ...string) *Daemon {
	t.Helper()
	return StartBinary(t, Bin("torided"), ns, stateDir, extra...)
}

// StartBinary is Start with another build of torided (see Build): one without the race detector, whose memory
// is the product's.
func StartBinary(t testing.TB, torided string, ns *lab.Netns, stateDir string, extra ...string) *Daemon {
	t.Helper()
	d := &Daemon{t: t, NS: ns, StateDir: stateDir, Socket: filepath.Join(stateDir, "api.sock")}
	args := append([]string{"--uts", torided, "--state-dir", stateDir, "--api-socket", d.Socket,
		"--resolv-conf", filepath.Join(stateDir, "resolv.conf"), "--log-level", "debug"}, extra...)
	d.Proc = ns.Start("unshare", args...)
	d.API = api.NewClient(d.Socket)
	ctx := lab.Within(t, 10*time.Second)
	err := lab.WaitFor(ctx, 50*time.Millisecond, func() error {
		if exited, werr := d.Proc.Exited(); exited {
			return lab.Permanent(fmt.Errorf("torided exited: %v", werr))
		}
		return d.API.Do(ctx, "GET", "/api/v1/status", nil, nil)
	})
	if err != nil {
		t.Fatalf("torided did not come up: %v\n%s", err, d.Proc.Output())
	}
	return d
}

// Toride runs the toride client against the daemon and returns its standard output and, on failure, an error
// carrying its standard error.
func (d *Daemon) Toride(args ...string) (string, error) {
	return d.TorideInput("", args...)
}

// TorideInput is Toride with text on standard input.
func (d *Daemon) TorideInput(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin("toride"), append([]string{"--socket", d.Socket}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("toride %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// MustToride is Toride that fails the test on error.
func (d *Daemon) MustToride(args ...string) string {
	d.t.Helper()
	out, err := d.Toride(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// Hostname returns the host name torided's UTS namespace holds.
func (d *Daemon) Hostname() string {
	d.t.Helper()
	out, err := exec.Command("nsenter", "--uts", "--target", fmt.Sprint(d.Proc.Pid()), "hostname").Output()
	if err != nil {
		d.t.Fatalf("reading torided's host name: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// Memory returns torided's resident memory now and its peak since start, from /proc.
func (d *Daemon) Memory() (rss, peak uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Proc.Pid()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		var kb uint64
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscan(v, &kb)
			rss = kb << 10
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscan(v, &kb)
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", d.Proc.Pid())
	}
	return rss, peak, nil
}
