package tablegate_test

import (
	"net/netip"
	"strings"
	"testing"

	"toride/dataplane/tablegate"
	"toride/tests/lab"
)

// TestGateOnTheKernel: with charon's table holding a route of 0.0.0.0/0 (as kernel-libipsec installs for a
// CHILD_SA of 0.0.0.0/0), only the destinations let through reach it; everything else keeps the main table's
// default route, and Set(nil) gives the namespace back as it was.
func TestGateOnTheKernel(t *testing.T) {
	l := lab.New(t)
	a := l.Namespace("gate")
	b := l.Namespace("peer")
	l.Link(a, "wan0", "192.0.2.1/24", b, "eth0", "192.0.2.2/24")
	l.Link(a, "tun0", "198.51.100.1/30", b, "eth1", "198.51.100.2/30") // stands for kernel-libipsec's ipsec0
	a.AddRoute("default", "192.0.2.2")
	a.MustRun("ip", "route", "add", "0.0.0.0/0", "dev", "tun0", "table", "220")
	a.MustRun("ip", "rule", "add", "priority", "220", "lookup", "220")
	via := func(dst string) string {
		t.Helper()
		out := a.MustRun("ip", "route", "get", dst)
		for _, dev := range []string{"wan0", "tun0"} {
			if strings.Contains(out, "dev "+dev) {
				return dev
			}
		}
		t.Fatalf("ip route get %s: %s", dst, out)
		return ""
	}
	if via("203.0.113.9") != "tun0" {
		t.Fatal("the setup is wrong: charon's table should draw everything without a gate")
	}
	g, err := tablegate.Open("/run/netns/" + a.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Set([]netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("169.254.10.1/32")}); err != nil {
		t.Fatal(err)
	}
	for dst, want := range map[string]string{"10.2.0.5": "tun0", "169.254.10.1": "tun0", "169.254.10.2": "wan0", "203.0.113.9": "wan0"} {
		if got := via(dst); got != want {
			t.Errorf("%s leaves by %s, want %s", dst, got, want)
		}
	}
	if err := g.Set([]netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	if got := via("169.254.10.1"); got != "wan0" {
		t.Errorf("a destination no longer let through leaves by %s", got)
	}
	if err := g.Set(nil); err != nil {
		t.Fatal(err)
	}
	if rules := a.MustRun("ip", "rule", "show"); strings.Contains(rules, "218:") || strings.Contains(rules, "219:") {
		t.Errorf("rules left after Set(nil):\n%s", rules)
	}
	if via("203.0.113.9") != "tun0" {
		t.Error("without the gate charon's table should draw everything again")
	}
}
