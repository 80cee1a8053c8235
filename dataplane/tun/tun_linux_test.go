package tun_test

import (
	"net"
	"strings"
	"testing"

	"toride/dataplane/tun"
	"toride/tests/lab"
)

// TestKernelMakesDevicesInItsNamespace: a device is made in the namespace given, with the MTU asked for and the
// kernel's offloads (a batch larger than one packet), and closing it removes it.
func TestKernelMakesDevicesInItsNamespace(t *testing.T) {
	l := lab.New(t)
	ns := l.Namespace("tun")
	dev, err := tun.Kernel{Netns: "/run/netns/" + ns.Name}.Create("vpn-test", 1420)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	name, err := dev.Name()
	if err != nil || name != "vpn-test" {
		t.Fatalf("name %q, %v", name, err)
	}
	if mtu, err := dev.MTU(); err != nil || mtu != 1420 {
		t.Fatalf("MTU %d, %v", mtu, err)
	}
	if dev.BatchSize() <= 1 {
		t.Fatalf("batch size %d: no offloads", dev.BatchSize())
	}
	if out := ns.MustRun("ip", "-d", "link", "show", "vpn-test"); !strings.Contains(out, "mtu 1420") || !strings.Contains(out, "tun type tun") {
		t.Fatalf("in the namespace: %s", out)
	}
	if _, err := net.InterfaceByName("vpn-test"); err == nil {
		t.Fatal("the device is in the test's own namespace too")
	}
	dev.Close()
	if out := ns.MustRun("ip", "link"); strings.Contains(out, "vpn-test") {
		t.Fatalf("the device outlived Close: %s", out)
	}
}
