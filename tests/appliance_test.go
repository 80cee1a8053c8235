package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"toride/appliance/api"
	"toride/appliance/config"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

func TestMain(m *testing.M) { toridetest.Main(m) }

// TestConsoleWorkflow drives torided with the toride client the way an admin would, and checks the kernel of the
// appliance's namespace after each step.
func TestConsoleWorkflow(t *testing.T) {
	l := lab.New(t, "ping", "nsenter", "unshare")
	box := l.Namespace("box")
	lan := l.Namespace("lan")
	l.Link(box, "eth0", "", lan, "eth0", "192.168.1.2/24")
	lan.DHCPServer("eth0", "192.168.1.1", "192.168.1.1")
	d := toridetest.Start(t, box, t.TempDir())

	// The embedded default configuration is applied at first start: eth0 takes its address, default route and
	// name server by DHCP.
	if err := lab.WaitFor(lab.Within(t, 20*time.Second), 200*time.Millisecond, func() error { return box.Ping("192.168.1.2", 1) }); err != nil {
		t.Fatalf("the default management address (DHCP) does not work: %v", err)
	}
	if out := box.MustRun("ip", "route", "show", "default"); !strings.Contains(out, "via 192.168.1.2") || !strings.Contains(out, "metric 210") {
		t.Fatalf("no default route from the lease:\n%s", out)
	}
	if data, err := os.ReadFile(filepath.Join(d.StateDir, "resolv.conf")); err != nil || !strings.Contains(string(data), "nameserver 192.168.1.2") ||
		!strings.Contains(string(data), "search lab.example") {
		t.Fatalf("resolver file from the lease: %q %v", data, err)
	}
	if got := d.Hostname(); got != "toride" {
		t.Fatalf("host name %q, want the default toride", got)
	}

	for _, cmd := range [][]string{
		{"set", "system", "host-name", "branch-gw1"},
		{"set", "system", "interfaces", "eth0", "address", "192.168.1.10/24"},
		{"set", "system", "interfaces", "eth1", "address", "10.50.0.1/24"},
		{"set", "system", "static-routes", "10.99.0.0/16", "next-hop", "192.168.1.2"},
		{"set", "system", "dns", "name-server", "192.0.2.53"},
	} {
		d.MustToride(cmd...)
	}
	diff := d.MustToride("compare")
	for _, want := range []string{"- set system host-name 'toride'", "+ set system host-name 'branch-gw1'", "+ set system interfaces eth1 address '10.50.0.1/24'"} {
		if !strings.Contains(diff, want) {
			t.Errorf("compare lacks %q:\n%s", want, diff)
		}
	}
	if out := d.MustToride("commit", "branch", "setup"); !strings.Contains(out, "Committed revision 2") {
		t.Fatalf("commit said %q", out)
	}
	if got := d.Hostname(); got != "branch-gw1" {
		t.Fatalf("host name after commit %q", got)
	}
	if out := box.MustRun("ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, "192.168.1.10/24") {
		t.Fatalf("second address missing:\n%s", out)
	}
	if out := box.MustRun("ip", "route", "show", "10.99.0.0/16"); !strings.Contains(out, "via 192.168.1.2") || !strings.Contains(out, "proto 201") {
		t.Fatalf("static route missing:\n%s", out)
	}
	if data, err := os.ReadFile(filepath.Join(d.StateDir, "resolv.conf")); err != nil || !strings.Contains(string(data), "nameserver 192.0.2.53") {
		t.Fatalf("resolver file: %q %v", data, err)
	}
	status := d.MustToride("show", "status")
	if !strings.Contains(status, "interface eth1 is not present") {
		t.Fatalf("status should say eth1 is pending:\n%s", status)
	}

	// eth1 arrives later (a NIC plugged in): its configuration follows at once.
	other := l.Namespace("other")
	l.Link(box, "eth1", "", other, "eth0", "10.50.0.2/24")
	if err := lab.WaitFor(lab.Within(t, 5*time.Second), 100*time.Millisecond, func() error { return box.Ping("10.50.0.2", 1) }); err != nil {
		t.Fatalf("eth1 was not configured when it appeared: %v", err)
	}

	// An invalid commit is refused whole, with every problem listed, and changes nothing.
	d.MustToride("set", "system", "host-name", "bad_name")
	d.MustToride("set", "system", "static-routes", "10.98.0.0/16", "distance", "5")
	_, err := d.Toride("commit")
	if err == nil || !strings.Contains(err.Error(), "system.host-name") || !strings.Contains(err.Error(), "system.static-routes.10.98.0.0/16.next-hop") {
		t.Fatalf("invalid commit: %v", err)
	}
	if got := d.Hostname(); got != "branch-gw1" {
		t.Fatalf("a refused commit changed the host name to %q", got)
	}
	d.MustToride("discard")

	// Rollback to the first revision undoes all of it.
	log := d.MustToride("show", "system", "commit")
	if !strings.Contains(log, "0   ") || !strings.Contains(log, ": branch setup") || !strings.Contains(log, "1   ") {
		t.Fatalf("commit log:\n%s", log)
	}
	d.MustToride("rollback", "1")
	if got := d.Hostname(); got != "toride" {
		t.Fatalf("host name after rollback %q", got)
	}
	if out := box.MustRun("ip", "route", "show", "10.99.0.0/16"); strings.TrimSpace(out) != "" {
		t.Fatalf("static route survived the rollback:\n%s", out)
	}
	if out := box.MustRun("ip", "-4", "addr", "show", "eth0"); strings.Contains(out, "192.168.1.10") || !strings.Contains(out, "192.168.1.1/24") {
		t.Fatalf("addresses after rollback:\n%s", out)
	}

	// The shell reads the same commands from standard input.
	out, err := d.TorideInput("set system host-name from-shell\ncompare\ncommit via shell\nshow configuration commands\n")
	if err != nil || !strings.Contains(out, "set system host-name 'from-shell'") {
		t.Fatalf("shell: %v\n%s", err, out)
	}

	// SIGTERM: a clean stop that removes the socket and leaves the box configured.
	if err := d.Proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("torided did not stop within 10 s of SIGTERM")
	}
	if _, err := d.Proc.Exited(); err != nil {
		t.Fatalf("torided exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Fatal("the API socket is left behind after SIGTERM")
	}
	if err := box.Ping("192.168.1.2", 1); err != nil {
		t.Fatalf("stopping torided deconfigured the box: %v", err)
	}
}

// TestApplyFailureRollsBackRealComponents makes the second component (the HTTPS API listener) fail on an
// address the box does not have, after the first (system) already changed the host name and a route: the commit
// fails and both are back.
func TestApplyFailureRollsBackRealComponents(t *testing.T) {
	l := lab.New(t, "nsenter", "unshare")
	box := l.Namespace("box")
	peer := l.Namespace("peer")
	l.Link(box, "eth0", "", peer, "eth0", "192.168.1.2/24")
	d := toridetest.Start(t, box, t.TempDir())
	ctx := lab.Within(t, time.Minute)
	err := d.API.Do(ctx, "POST", "/api/v1/config/commands", map[string]any{"commands": []string{
		"set system host-name doomed",
		"set system static-routes 10.99.0.0/16 next-hop 192.168.1.2",
		"set api https listen-address 203.0.113.77",
		"set api keys ops key-sha256 " + strings.Repeat("ab", 32),
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = d.API.Do(ctx, "POST", "/api/v1/config/commit", map[string]any{}, nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != "apply_failed" || ae.Status != http.StatusInternalServerError ||
		!strings.Contains(ae.Message, "failed in api") || !strings.Contains(ae.Message, "every component was returned") {
		t.Fatalf("commit = %v, want apply_failed naming the api component", err)
	}
	if got := d.Hostname(); got != "toride" {
		t.Fatalf("host name %q after a failed commit, want it rolled back", got)
	}
	if out := box.MustRun("ip", "route", "show", "10.99.0.0/16"); strings.TrimSpace(out) != "" {
		t.Fatalf("route left after a failed commit:\n%s", out)
	}
	var running config.Config
	if err := d.API.Do(ctx, "GET", "/api/v1/config", nil, &running); err != nil || running.System.HostName != "" && running.System.HostName != "toride" {
		t.Fatalf("running config changed: %+v %v", running.System, err)
	}
	var commits struct{ Commits []any }
	if err := d.API.Do(ctx, "GET", "/api/v1/config/commits", nil, &commits); err != nil || len(commits.Commits) != 1 {
		t.Fatalf("a failed commit reached the archive: %+v %v", commits, err)
	}
}

// TestAPIErrors checks that every kind of bad request gets a JSON error with a code, never a crash.
func TestAPIErrors(t *testing.T) {
	l := lab.New(t, "unshare")
	d := toridetest.Start(t, l.Namespace("box"), t.TempDir())
	ctx := lab.Within(t, time.Minute)
	tests := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/api/v1/nothing", nil, 404, "not_found"},
		{"DELETE", "/api/v1/config/commit", nil, 405, "method_not_allowed"},
		{"POST", "/api/v1/config/set", []byte("{not json"), 400, "bad_request"},
		{"POST", "/api/v1/config/set", map[string]any{"path": []string{"system", "host-name"}, "extra": 1}, 400, "bad_request"},
		{"POST", "/api/v1/config/set", map[string]any{"path": []string{"system", "hostname", "x"}}, 400, "invalid_path"},
		{"POST", "/api/v1/config/commands", map[string]any{"commands": []string{"set system host-name ok", "frobnicate"}}, 400, "invalid_path"},
		{"GET", "/api/v1/config?format=xml", nil, 400, "bad_request"},
		{"GET", "/api/v1/config/compare?rev=99", nil, 404, "no_such_revision"},
		{"POST", "/api/v1/config/rollback", map[string]any{}, 400, "bad_request"},
		{"POST", "/api/v1/config/confirm", nil, 409, "no_pending_confirm"},
		{"PUT", "/api/v1/config/candidate", []byte(`{"system":{"hostname":"x"}}`), 400, "bad_request"},
		{"POST", "/api/v1/config/set", []byte(`{"path": ["` + strings.Repeat("x", 17<<20) + `"]}`), 413, "too_large"},
	}
	for _, tt := range tests {
		err := d.API.Do(ctx, tt.method, tt.path, tt.body, nil)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != tt.status || ae.Code != tt.code || ae.Message == "" {
			t.Errorf("%s %s = %v (%+v), want %d %s", tt.method, tt.path, err, ae, tt.status, tt.code)
		}
	}
	// A batch with one bad command applied nothing.
	var cand config.Config
	if err := d.API.Do(ctx, "GET", "/api/v1/config?source=candidate", nil, &cand); err != nil || cand.System.HostName == "ok" {
		t.Fatalf("a failed batch changed the candidate: %q %v", cand.System.HostName, err)
	}
	// Validation errors carry every problem with path, value and fix.
	if err := d.API.Do(ctx, "POST", "/api/v1/config/commands", map[string]any{"commands": []string{
		"set sslvpn servers main pool 10.8.0.0/28", "set sslvpn servers main topology net30"}}, nil); err != nil {
		t.Fatal(err)
	}
	err := d.API.Do(ctx, "POST", "/api/v1/config/commit", nil, nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != "invalid_config" || ae.Status != 422 || len(ae.Problems) != 3 {
		t.Fatalf("invalid commit = %+v", err)
	}
	for _, p := range ae.Problems {
		if p.Path == "sslvpn.servers.main.pool" && (p.Value != "10.8.0.0/28" || p.Fix != "use a /25 or larger") {
			t.Errorf("pool problem = %+v", p)
		}
	}
	// Still serving after all that.
	if err := d.API.Do(ctx, "GET", "/api/v1/status", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// TestKill9Durability kills torided with SIGKILL at random moments while commits stream in, many times. After
// each restart the saved configuration parses and is exactly the last acknowledged commit or the one in flight,
// never a mix, and the archive agrees with it.
func TestKill9Durability(t *testing.T) {
	l := lab.New(t, "unshare")
	box := l.Namespace("box")
	state := t.TempDir()
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	next := 1 // the next commit number
	lastAcked := 0
	for round := range rounds {
		d := toridetest.Start(t, box, state)
		got := savedGeneration(t, state)
		if got != lastAcked && got != next-1 {
			t.Fatalf("round %d: saved generation %d, want %d (acknowledged) or %d (in flight)", round, got, lastAcked, next-1)
		}
		var commits struct{ Commits []struct{ Comment string } }
		if err := d.API.Do(context.Background(), "GET", "/api/v1/config/commits", nil, &commits); err != nil {
			t.Fatal(err)
		}
		if got > 0 && commits.Commits[0].Comment != fmt.Sprintf("generation %d", got) {
			t.Fatalf("round %d: archive's newest commit %q disagrees with the saved generation %d", round, commits.Commits[0].Comment, got)
		}
		lastAcked, next = got, got+1

		var acked atomic.Int64
		acked.Store(int64(lastAcked))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int)
		go func() {
			n := next
			for ctx.Err() == nil {
				err := d.API.Do(ctx, "POST", "/api/v1/config/commands", map[string]any{"commands": []string{
					fmt.Sprintf("set system host-name gen-%d", n),
					fmt.Sprintf("set system interfaces eth0 description 'generation %d'", n),
				}}, nil)
				if err == nil {
					err = d.API.Do(ctx, "POST", "/api/v1/config/commit", map[string]any{"comment": fmt.Sprintf("generation %d", n)}, nil)
				}
				if err != nil {
					break
				}
				acked.Store(int64(n))
				n++
			}
			done <- n // the generation that was in flight when the daemon died
		}()
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		d.Proc.Kill()
		cancel()
		inFlight := <-done
		lastAcked, next = int(acked.Load()), inFlight+1
	}
	if lastAcked < rounds {
		t.Fatalf("only %d commits were acknowledged over %d rounds; the test did not exercise commits", lastAcked, rounds)
	}
}

// savedGeneration parses config.json and returns the generation it holds, failing on a mix of two generations.
func savedGeneration(t *testing.T, state string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(state, "config", "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Unmarshal(data)
	if err != nil {
		t.Fatalf("saved configuration does not parse after kill -9: %v\n%s", err, data)
	}
	if c.System.HostName == "toride" {
		return 0
	}
	var a, b int
	if _, err := fmt.Sscanf(c.System.HostName, "gen-%d", &a); err != nil {
		t.Fatalf("saved host name %q", c.System.HostName)
	}
	if eth0 := c.System.Interfaces["eth0"]; eth0 != nil {
		fmt.Sscanf(eth0.Description, "generation %d", &b)
	}
	if a != b {
		t.Fatalf("saved configuration mixes generations: host name %d, description %d\n%s", a, b, data)
	}
	return a
}
