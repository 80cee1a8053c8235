package console

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestShellExitStatus: an admin who leaves the interactive shell with exit has succeeded, whatever failed on the
// way (make run must not report an error then); a script piped into the shell gets the status of its first
// failure.
func TestShellExitStatus(t *testing.T) {
	unreachable := filepath.Join(t.TempDir(), "no.sock")
	for _, tt := range []struct {
		name        string
		input       string
		interactive bool
		want        int
	}{
		{"interactive, a failed command, then exit", "show status\nexit\n", true, 0},
		{"interactive, end of input", "show status\n", true, 0},
		{"script, unreachable daemon first", "show status\nshow wibble\n", false, 1},
		{"script, bad usage first", "show wibble\nshow status\n", false, 2},
		{"script, nothing failed", "# a comment\n\nexit\nshow status\n", false, 0},
	} {
		var out bytes.Buffer
		sh := New(Options{API: NewClient(unreachable), Stdout: &out, Stderr: &out})
		got := sh.Run(context.Background(), NewScriptReader(strings.NewReader(tt.input), nil), tt.interactive)
		if got != tt.want {
			t.Errorf("%s: status %d, want %d; output:\n%s", tt.name, got, tt.want, out.String())
		}
	}
}

// TestShowSSLVPN: the table shows each server's refusals and failed handshakes by protocol, as the status API
// gives them.
func TestShowSSLVPN(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/sslvpn/status" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"servers": [{"name": "main", "pool": "10.8.0.0/24", "sessions": 1, "max_sessions": 20,
			"pool_in_use": 1, "pool_capacity": 253, "refused": {"otp": 2},
			"failed_handshakes": {"openvpn-udp": 1000, "anyconnect": 5}}]}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	var out bytes.Buffer
	sh := New(Options{API: NewClient(sock), Stdout: &out, Stderr: &out})
	if err := sh.Exec(context.Background(), []string{"show", "sslvpn"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAILED", "refused: otp=2", "failed handshakes: anyconnect=5 openvpn-udp=1000"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show sslvpn lacks %q:\n%s", want, out.String())
		}
	}
}

// show ipsec names each tunnel's interface, mode and BGP session; show ipsec bgp routes lists the learned paths.
func TestShowIPsecBGP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/ipsec/status" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"running": true, "backend": "kernel-netlink", "mode": "route-based",
			"connections": [{"name": "aws", "active_tunnel": 0, "tunnels": [
				{"name": "tunnel1", "interface": "aws-t1", "state": "up", "active": true,
				 "bgp": {"state": "established", "uptime_s": 125, "prefixes_received": 1, "prefixes_advertised": 1, "local_preference": 200}},
				{"name": "tunnel2", "interface": "aws-t2", "state": "up",
				 "bgp": {"state": "active", "local_preference": 100, "as_path_prepend": 2}}]}],
			"bgp_routes": [{"prefix": "10.2.0.0/24", "next_hop": "169.254.10.1", "neighbor": "aws tunnel1", "best": true,
				"local_preference": 200, "as_path": [64512]}]}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"show", "ipsec"}, []string{"aws-t1", "route-based", "BGP aws tunnel1: established 2m5s, routes 1 in 1 out, pref 200, prepend 0",
			"BGP aws tunnel2: active, routes 0 in 0 out, pref 100, prepend 2"}},
		{[]string{"show", "ipsec", "bgp", "routes"}, []string{"10.2.0.0/24", "169.254.10.1", "aws tunnel1", "64512"}},
	} {
		var out bytes.Buffer
		sh := New(Options{API: NewClient(sock), Stdout: &out, Stderr: &out})
		if err := sh.Exec(context.Background(), tt.args); err != nil {
			t.Fatal(err)
		}
		for _, want := range tt.want {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s lacks %q:\n%s", strings.Join(tt.args, " "), want, out.String())
			}
		}
	}
}
