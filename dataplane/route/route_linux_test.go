package route_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"toride/dataplane/route"
	"toride/tests/lab"
)

func TestRoutesOwnOnlyTheirs(t *testing.T) {
	l := lab.New(t)
	a := l.Namespace("rt")
	b := l.Namespace("peer")
	l.Link(a, "eth0", "192.0.2.1/24", b, "eth0", "192.0.2.2/24")
	// A route that is not ours must survive everything below.
	a.AddRoute("198.51.100.0/24", "192.0.2.254")

	ns, err := netns.GetFromName(a.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	r, err := route.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	def := route.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.0.2.2"), Metric: 1}
	if err := r.Replace(def); err != nil {
		t.Fatal(err)
	}
	if err := r.Replace(def); err != nil {
		t.Fatalf("Replace is not idempotent: %v", err)
	}
	far := route.Route{Dst: netip.MustParsePrefix("10.9.0.0/16"), Via: netip.MustParseAddr("203.0.113.1"), Metric: 1}
	if err := r.Replace(far); !errors.Is(err, route.ErrUnreachable) {
		t.Fatalf("route via an unconnected next hop = %v, want ErrUnreachable", err)
	}
	got, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != def {
		t.Fatalf("List = %+v, want only our default route", got)
	}
	if err := a.Ping("192.0.2.2", 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(def); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(def); err != nil {
		t.Fatalf("Delete is not idempotent: %v", err)
	}
	out := a.MustRun("ip", "route", "show")
	if want := "198.51.100.0/24 via 192.0.2.254"; !strings.Contains(out, want) || strings.Contains(out, "default") {
		t.Fatalf("routing table after delete:\n%s\nwant the admin's route kept and ours gone", out)
	}
}
