package sysctl

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGetSet(t *testing.T) {
	root = t.TempDir()
	p := filepath.Join(root, "net", "ipv4", "ip_forward")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("0\n"), 0o644)
	if v, err := Get("net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Fatalf("Get = %q %v", v, err)
	}
	if err := Set("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := Get("net.ipv4.ip_forward"); v != "1" {
		t.Fatalf("after Set: %q", v)
	}
	if err := Set("net.no.such", "1"); err == nil {
		t.Fatal("setting a missing parameter succeeded")
	}
}
