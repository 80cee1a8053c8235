package charon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfOrdersLibipsecFirst(t *testing.T) {
	conf := Conf(ConfOptions{Backend: BackendLibipsec, Socket: "/run/charon.vici"})
	load := ""
	for _, line := range strings.Split(conf, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "load =") {
			load = line
		}
	}
	li, ln := strings.Index(load, "kernel-libipsec"), strings.Index(load, "kernel-netlink")
	if li < 0 || ln < 0 || li > ln {
		t.Fatalf("kernel-libipsec must be loaded before kernel-netlink: %q", load)
	}
	if !strings.Contains(conf, "socket = unix:///run/charon.vici") || !strings.Contains(conf, "load_modular = no") {
		t.Fatalf("conf misses the socket or load_modular:\n%s", conf)
	}
	if strings.Contains(Conf(ConfOptions{Backend: BackendKernel}), "kernel-libipsec") {
		t.Fatal("kernel backend must not load kernel-libipsec")
	}
	if !strings.Contains(conf, "install_routes = yes") {
		t.Fatalf("policy-based charon must install its routes:\n%s", conf)
	}
	if !strings.Contains(Conf(ConfOptions{Backend: BackendKernel, RouteBased: true}), "install_routes = no") {
		t.Fatal("route-based charon must leave routing to the routing table")
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	if _, err := Start(Options{Backend: BackendLibipsec}); err == nil {
		t.Fatal("no run directory: want error")
	}
	if _, err := Start(Options{RunDir: t.TempDir(), Backend: "x"}); err == nil {
		t.Fatal("unknown backend: want error")
	}
}

func TestCheckPlugins(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"vici", "socket-default", "kernel-netlink", "openssl"} {
		if err := os.WriteFile(filepath.Join(dir, "libstrongswan-"+p+".so"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkPlugins(dir, BackendKernel); err != nil {
		t.Fatal(err)
	}
	err := checkPlugins(dir, BackendLibipsec)
	if err == nil || !strings.Contains(err.Error(), "kernel-libipsec (package libcharon-extra-plugins)") {
		t.Fatalf("err = %v", err)
	}
	if err := checkPlugins(filepath.Join(dir, "none"), BackendLibipsec); err != nil {
		t.Fatalf("no plugin directory: %v", err)
	}
}
