// Package lab builds small networks of Linux network namespaces for tests: namespaces, veth links, addresses,
// routes, and processes started inside a namespace with their output kept for the test log. A test can also
// capture what a link carries (Netns.Capture), send raw IPv4 packets of its own making (Netns.SendIP), and read
// packets with gopacket (DecodeFrame, DecodeIP: TCP options, ICMP, ESP plain or in UDP 4500).
//
// Every object a Lab creates is removed through t.Cleanup, also when the test fails or panics, so a test never
// leaves namespaces or processes behind. Names carry a random prefix, so packages running in parallel never
// collide. A test binary killed before its cleanups ran (a `go test -timeout`, say) leaves them anyway; the
// next test binary to make a lab removes them (see sweep.go).
//
// The lab needs root. Require skips a test when not root, except when the environment says the lab tests must
// run (TORIDE_LAB_REQUIRED=1 or CI=true): then a missing privilege fails the test instead, so root-only tests can
// never silently stop running in CI.
//
// A Lab is safe for use by one test goroutine; Process methods are safe for concurrent use.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Required reports whether root-only tests must run rather than skip.
func Required() bool {
	return os.Getenv("TORIDE_LAB_REQUIRED") == "1" || os.Getenv("CI") == "true"
}

// Require skips the test unless it runs as root with the tools the lab needs; under Required it fails instead.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, "the "+tool+" command")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "lab test needs " + strings.Join(missing, ", ")
	if Required() {
		t.Fatal(msg + " (TORIDE_LAB_REQUIRED/CI is set, so this is a failure, not a skip; run `make test`)")
	}
	t.Skip(msg)
}

// RequireKernel skips a test on a kernel without what it needs (have false; what names it, "ESP"), except in the
// VM tier (tests/vm), which boots the appliance's own kernel for such tests: there a missing feature fails.
func RequireKernel(t testing.TB, have bool, what string) {
	t.Helper()
	if have {
		return
	}
	if os.Getenv("TORIDE_VM") != "" {
		t.Fatalf("the VM's kernel has no %s", what)
	}
	t.Skipf("this kernel has no %s: the VM tier (tests/vm) runs this test on the appliance's kernel", what)
}

// Lab is one test's set of namespaces and processes.
type Lab struct {
	t      testing.TB
	prefix string
	nsSeq  int
}

// New returns an empty lab for t. It calls Require first.
func New(t testing.TB, tools ...string) *Lab {
	t.Helper()
	Require(t, tools...)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	l := &Lab{t: t, prefix: "tl" + hex.EncodeToString(b[:])}
	l.recordOwner()
	return l
}

// Netns is one network namespace of a lab.
type Netns struct {
	lab    *Lab
	Name   string // the name under /run/netns
	handle *netlink.Handle
}

// Namespace creates a network namespace with its loopback up. role is a short word for logs ("client", "lan").
func (l *Lab) Namespace(role string) *Netns {
	l.t.Helper()
	l.nsSeq++
	name := fmt.Sprintf("%s-%d%s", l.prefix, l.nsSeq, role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		l.t.Fatalf("lab: ip netns add %s: %v: %s", name, err, out)
	}
	n := &Netns{lab: l, Name: name}
	l.t.Cleanup(func() {
		n.killAll()
		if n.handle != nil {
			n.handle.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Logf("lab: ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		l.t.Fatalf("lab: open netns %s: %v", name, err)
	}
	defer ns.Close()
	n.handle, err = netlink.NewHandleAt(ns)
	if err != nil {
		l.t.Fatalf("lab: netlink handle in %s: %v", name, err)
	}
	n.LinkUp("lo")
	return n
}

// Handle is the namespace's netlink handle, for tests that inspect kernel state.
func (n *Netns) Handle() *netlink.Handle { return n.handle }

// Link joins two namespaces with a veth pair named aIf (in a) and bIf (in b) and gives each end its address
// ("10.0.0.1/24", or "" for none). Both ends are brought up.
func (l *Lab) Link(a *Netns, aIf, aAddr string, b *Netns, bIf, bAddr string) {
	l.t.Helper()
	// Create the pair in a with a temporary peer name, then move the peer into b under its real name, so the
	// two interface names may be equal (eth0 on both sides) without clashing in a.
	tmp := fmt.Sprintf("tlv%d%s", l.nsSeq, randHex(3))
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aIf}, PeerName: tmp}
	if err := a.handle.LinkAdd(veth); err != nil {
		l.t.Fatalf("lab: veth %s/%s in %s: %v", aIf, tmp, a.Name, err)
	}
	peer, err := a.handle.LinkByName(tmp)
	if err != nil {
		l.t.Fatalf("lab: find %s: %v", tmp, err)
	}
	bns, err := netns.GetFromName(b.Name)
	if err != nil {
		l.t.Fatalf("lab: open netns %s: %v", b.Name, err)
	}
	defer bns.Close()
	if err := a.handle.LinkSetNsFd(peer, int(bns)); err != nil {
		l.t.Fatalf("lab: move %s to %s: %v", tmp, b.Name, err)
	}
	moved, err := b.handle.LinkByName(tmp)
	if err != nil {
		l.t.Fatalf("lab: find %s in %s: %v", tmp, b.Name, err)
	}
	if err := b.handle.LinkSetName(moved, bIf); err != nil {
		l.t.Fatalf("lab: rename %s to %s in %s: %v", tmp, bIf, b.Name, err)
	}
	for _, end := range []struct {
		ns        *Netns
		ifc, cidr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if end.cidr != "" {
			end.ns.AddAddr(end.ifc, end.cidr)
		}
		end.ns.LinkUp(end.ifc)
	}
}

// LinkUp sets a link up.
func (n *Netns) LinkUp(ifname string) {
	n.lab.t.Helper()
	link, err := n.handle.LinkByName(ifname)
	if err != nil {
		n.lab.t.Fatalf("lab: %s: link %s: %v", n.Name, ifname, err)
	}
	if err := n.handle.LinkSetUp(link); err != nil {
		n.lab.t.Fatalf("lab: %s: set %s up: %v", n.Name, ifname, err)
	}
}

// AddAddr adds an address in CIDR form to a link.
func (n *Netns) AddAddr(ifname, cidr string) {
	n.lab.t.Helper()
	link, err := n.handle.LinkByName(ifname)
	if err != nil {
		n.lab.t.Fatalf("lab: %s: link %s: %v", n.Name, ifname, err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		n.lab.t.Fatalf("lab: address %q: %v", cidr, err)
	}
	// No DAD: tests want the address usable at once.
	addr.Flags |= 0x80 // IFA_F_NODAD
	if err := n.handle.AddrAdd(link, addr); err != nil {
		n.lab.t.Fatalf("lab: %s: add %s to %s: %v", n.Name, cidr, ifname, err)
	}
}

// AddRoute adds a route to dst ("10.9.0.0/16" or "default") via a gateway address.
func (n *Netns) AddRoute(dst, via string) {
	n.lab.t.Helper()
	gw, err := netip.ParseAddr(via)
	if err != nil {
		n.lab.t.Fatalf("lab: gateway %q: %v", via, err)
	}
	r := &netlink.Route{Gw: net.IP(gw.AsSlice())}
	if dst != "default" {
		_, ipnet, err := net.ParseCIDR(dst)
		if err != nil {
			n.lab.t.Fatalf("lab: route %q: %v", dst, err)
		}
		r.Dst = ipnet
	}
	if err := n.handle.RouteAdd(r); err != nil {
		n.lab.t.Fatalf("lab: %s: route %s via %s: %v", n.Name, dst, via, err)
	}
}

// EnableForwarding turns on IPv4 forwarding in the namespace (a router between two links).
func (n *Netns) EnableForwarding() {
	n.lab.t.Helper()
	if err := n.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		n.lab.t.Fatalf("lab: %s: enable forwarding: %v", n.Name, err)
	}
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn opens stay in the namespace after it
// returns. fn must not start goroutines that expect to be in the namespace: they are not.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread stays locked and ends with the goroutine
		}
		defer orig.Close()
		ns, err := netns.GetFromName(n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		// Only a thread back in its own namespace may serve other goroutines again; if the way back fails, the
		// thread stays locked and Go retires it with this goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Command returns a command that runs inside the namespace.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace to completion (bounded by 60 s) and returns its combined output.
func (n *Netns) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *Netns) MustRun(name string, args ...string) string {
	n.lab.t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	return out
}

// Ping sends count ICMP echo requests to addr from the namespace and reports whether all were answered.
func (n *Netns) Ping(addr string, count int) error {
	_, err := n.Run("ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", addr)
	return err
}

// Transfer is what one iperf3 run moved: the bytes the receiving side got, in how long, and the rate.
type Transfer struct {
	Bytes   int64
	Seconds float64
	Mbps    float64
}

// IperfServer runs iperf3 servers in a namespace: a fresh one-off server on a port of its own for every test, so
// that a test never meets a server still finishing the one before (a reverse test over a TCP tunnel can keep
// the last one busy for seconds after its client has its figures).
type IperfServer struct {
	ns   *Netns
	addr string
	port int // of the last test
}

// IperfServer prepares iperf3 servers in the namespace, listening on addr.
func (n *Netns) IperfServer(addr string) *IperfServer {
	return &IperfServer{ns: n, addr: addr, port: 5200}
}

// Run runs a TCP test of the given length from the namespace from: it sends (upload) or, with download set,
// receives (iperf3 -R). It returns what the receiver got.
func (s *IperfServer) Run(t testing.TB, from *Netns, seconds int, download bool) Transfer {
	t.Helper()
	s.port++
	port := fmt.Sprint(s.port)
	srv := s.ns.Start("iperf3", "-s", "-1", "-B", s.addr, "-p", port, "--forceflush")
	defer srv.Stop()
	if err := srv.WaitOutput(Within(t, 10*time.Second), "Server listening on "+port); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", s.addr, "-p", port, "-t", fmt.Sprint(seconds), "-J"}
	if download {
		args = append(args, "-R")
	}
	out, err := from.Run("iperf3", args...)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes         int64   `json:"bytes"`
				Seconds       float64 `json:"seconds"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	got := r.End.SumReceived
	if r.Error != "" || got.Bytes == 0 {
		t.Fatalf("iperf3 to %s (download %v) moved nothing: %s\n%s", s.addr, download, r.Error, out)
	}
	return Transfer{Bytes: got.Bytes, Seconds: got.Seconds, Mbps: got.BitsPerSecond / 1e6}
}

// Process is a command running in the background inside a namespace.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	err  error // valid after done is closed
}

// Start starts a command in the background inside the namespace. Its output is kept and printed to the test
// log if the test fails; the process is killed (its whole process group) at cleanup.
func (n *Netns) Start(name string, args ...string) *Process {
	n.lab.t.Helper()
	p, err := n.StartErr(name, args...)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	return p
}

// StartErr is Start returning the error instead of failing the test.
func (n *Netns) StartErr(name string, args ...string) (*Process, error) {
	cmd := n.Command(context.Background(), name, args...)
	return n.startCmd(name, cmd)
}

// StartCmd starts a prepared command (its environment or working directory set by the caller) inside the
// namespace; cmd.Path and cmd.Args name the program, as from exec.Command.
func (n *Netns) StartCmd(cmd *exec.Cmd) *Process {
	n.lab.t.Helper()
	wrapped := n.Command(context.Background(), cmd.Path, cmd.Args[1:]...)
	wrapped.Env, wrapped.Dir, wrapped.Stdin = cmd.Env, cmd.Dir, cmd.Stdin
	p, err := n.startCmd(cmd.Args[0], wrapped)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	return p
}

func (n *Netns) startCmd(name string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{Name: fmt.Sprintf("%s[%s]", name, n.Name), cmd: cmd, out: &logBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = processGroup()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", p.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t := n.lab.t
	n.lab.t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s---- end of %s ----", p.Name, p.out.String(), p.Name)
		}
	})
	return p, nil
}

// Pid is the process id (of the command itself: ip netns exec replaces itself with it).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and its wait error if so.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process alone.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop asks the process group to end (SIGTERM), and kills it after 5 s. It is idempotent.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	terminateGroup(p.cmd.Process.Pid)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		killGroup(p.cmd.Process.Pid)
		<-p.done
	}
}

// Kill kills the process group at once (SIGKILL) and waits for the process to end.
func (p *Process) Kill() {
	killGroup(p.cmd.Process.Pid)
	<-p.done
}

// WaitOutput waits until the process has printed substr, the process ends, or ctx is done.
func (p *Process) WaitOutput(ctx context.Context, substr string) error {
	err := WaitFor(ctx, 50*time.Millisecond, func() error {
		if strings.Contains(p.out.String(), substr) {
			return nil
		}
		if exited, werr := p.Exited(); exited {
			return stopWaiting{fmt.Errorf("%s ended (%v) before printing %q", p.Name, werr, substr)}
		}
		return fmt.Errorf("%s has not printed %q", p.Name, substr)
	})
	return err
}

// WaitExit waits until the process has ended, or ctx is done.
func (p *Process) WaitExit(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
	}
}

// killAll is a safety net: processes are stopped by their own cleanups, which run first.
func (n *Netns) killAll() {
	out, err := exec.Command("ip", "netns", "pids", n.Name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		var pid int
		// Never ourselves: a thread of the test binary may have been inside the namespace.
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			killPid(pid)
		}
	}
}

// stopWaiting wraps an error that makes WaitFor give up at once.
type stopWaiting struct{ error }

// Permanent wraps err so that WaitFor returns it at once instead of retrying.
func Permanent(err error) error { return stopWaiting{err} }

// WaitFor calls cond every interval until it returns nil, returns a Permanent error, or ctx ends. It returns nil
// or the last error of cond, wrapped with the context's error.
func WaitFor(ctx context.Context, interval time.Duration, cond func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var sw stopWaiting
		if errors.As(err, &sw) {
			return sw.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Within returns a context that ends after d, canceled at test cleanup.
func Within(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer keeps the last 1 MiB of a process's output.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const logBufferMax = 1 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - logBufferMax; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
