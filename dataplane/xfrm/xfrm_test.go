package xfrm

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeKernel is the kernel's links in memory, recording every change Set asks for.
type fakeKernel struct {
	ifs     map[string]*link
	rts     map[netip.Prefix]string
	rp      map[string]bool
	calls   []string
	failAdd error
	sas     []SAStats
}

func newFake(ls ...link) *fakeKernel {
	f := &fakeKernel{ifs: map[string]*link{}, rts: map[netip.Prefix]string{}, rp: map[string]bool{}}
	for _, l := range ls {
		f.ifs[l.Name] = &l
	}
	return f
}

func (f *fakeKernel) call(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeKernel) links() ([]link, error) {
	var out []link
	for _, name := range sortedKeys(f.ifs) {
		l := *f.ifs[name]
		l.Addresses = slices.Clone(l.Addresses)
		out = append(out, l)
	}
	return out, nil
}

func sortedKeys(m map[string]*link) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (f *fakeKernel) add(i Interface) error {
	if f.failAdd != nil {
		return f.failAdd
	}
	f.call("add %s %d", i.Name, i.IfID)
	f.ifs[i.Name] = &link{Name: i.Name, Kind: "xfrm", IfID: i.IfID, MTU: max(i.MTU, 1500), Alias: Owner}
	return nil
}

func (f *fakeKernel) remove(name string) error {
	f.call("remove %s", name)
	delete(f.ifs, name)
	return nil
}

func (f *fakeKernel) setMTU(name string, mtu int) error {
	f.call("mtu %s %d", name, mtu)
	f.ifs[name].MTU = mtu
	return nil
}

func (f *fakeKernel) addAddress(name string, p netip.Prefix) error {
	f.call("addr+ %s %s", name, p)
	f.ifs[name].Addresses = append(f.ifs[name].Addresses, p)
	return nil
}

func (f *fakeKernel) removeAddress(name string, p netip.Prefix) error {
	f.call("addr- %s %s", name, p)
	l := f.ifs[name]
	l.Addresses = slices.DeleteFunc(l.Addresses, func(a netip.Prefix) bool { return a == p })
	return nil
}

func (f *fakeKernel) setUp(name string) error {
	f.call("up %s", name)
	f.ifs[name].Up = true
	return nil
}

func (f *fakeKernel) looseRPFilter(name string) error          { f.rp[name] = true; return nil }
func (f *fakeKernel) routes() (map[netip.Prefix]string, error) { return maps.Clone(f.rts), nil }

func (f *fakeKernel) replaceRoute(dst netip.Prefix, ifname string) error {
	f.call("route %s %s", dst, ifname)
	f.rts[dst] = ifname
	return nil
}

func (f *fakeKernel) removeRoute(dst netip.Prefix, ifname string) error {
	f.call("unroute %s %s", dst, ifname)
	delete(f.rts, dst)
	return nil
}
func (f *fakeKernel) states() ([]SAStats, error) { return slices.Clone(f.sas), nil }
func (f *fakeKernel) removeSA(s SAStats) error {
	f.call("delete SA %#x", s.SPI)
	f.sas = slices.DeleteFunc(f.sas, func(x SAStats) bool { return x.SPI == s.SPI })
	return nil
}
func (f *fakeKernel) close() {}

var (
	tun1 = Interface{Name: "xfrm-aws-1", IfID: 11, MTU: 1436, Address: netip.MustParsePrefix("169.254.10.2/30")}
	tun2 = Interface{Name: "xfrm-aws-2", IfID: 12, MTU: 1436, Address: netip.MustParsePrefix("169.254.11.2/30")}
)

func TestSetCreatesThenChangesNothing(t *testing.T) {
	f := newFake(link{Name: "wan0", Kind: "veth", MTU: 1500, Up: true})
	tn := &Tunnels{k: f}
	if err := tn.Set([]Interface{tun1, tun2}); err != nil {
		t.Fatal(err)
	}
	want := []string{"add xfrm-aws-1 11", "mtu xfrm-aws-1 1436", "addr+ xfrm-aws-1 169.254.10.2/30", "up xfrm-aws-1",
		"add xfrm-aws-2 12", "mtu xfrm-aws-2 1436", "addr+ xfrm-aws-2 169.254.11.2/30", "up xfrm-aws-2"}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
	if !f.rp["xfrm-aws-1"] || !f.rp["xfrm-aws-2"] {
		t.Errorf("reverse-path filtering not loosened: %v", f.rp)
	}
	f.calls = nil
	if err := tn.Set([]Interface{tun1, tun2}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("a second Set with the same interfaces changed: %q", f.calls)
	}
}

func TestSetCorrectsDriftAndRemovesOnlyItsOwn(t *testing.T) {
	f := newFake(
		// Ours, but changed behind our back: another MTU, a stray address, down.
		link{Name: "xfrm-aws-1", Kind: "xfrm", IfID: 11, MTU: 1400, Alias: Owner, Addresses: []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}},
		// Ours, with the wrong if_id: the kernel cannot change it, so it is made again.
		link{Name: "xfrm-aws-2", Kind: "xfrm", IfID: 99, MTU: 1436, Alias: Owner, Up: true, Addresses: []netip.Prefix{tun2.Address}},
		// Ours and no longer wanted.
		link{Name: "xfrm-old-1", Kind: "xfrm", IfID: 5, Alias: Owner, Up: true},
		// Someone else's xfrm interface: never touched.
		link{Name: "xfrm-admin", Kind: "xfrm", IfID: 7, Up: true},
	)
	tn := &Tunnels{k: f}
	if err := tn.Set([]Interface{tun1, tun2}); err != nil {
		t.Fatal(err)
	}
	want := []string{"remove xfrm-old-1", "mtu xfrm-aws-1 1436", "addr- xfrm-aws-1 10.9.9.9/32", "addr+ xfrm-aws-1 169.254.10.2/30",
		"up xfrm-aws-1", "remove xfrm-aws-2", "add xfrm-aws-2 12", "mtu xfrm-aws-2 1436", "addr+ xfrm-aws-2 169.254.11.2/30", "up xfrm-aws-2"}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
	if _, ok := f.ifs["xfrm-admin"]; !ok {
		t.Error("an interface the appliance did not make was removed")
	}
	f.calls = nil
	if err := tn.Set(nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"remove xfrm-aws-1", "remove xfrm-aws-2"}; !slices.Equal(f.calls, want) {
		t.Errorf("Set(nil): %q, want %q", f.calls, want)
	}
}

func TestSetRefusesANameItDoesNotOwn(t *testing.T) {
	f := newFake(link{Name: "xfrm-aws-1", Kind: "veth", Up: true})
	tn := &Tunnels{k: f}
	err := tn.Set([]Interface{tun1, tun2})
	if err == nil || !errors.Is(err, ErrXFRM) || !strings.Contains(err.Error(), "xfrm-aws-1 exists and is not an xfrm interface this appliance made") {
		t.Fatalf("err = %v", err)
	}
	if f.ifs["xfrm-aws-1"].Kind != "veth" || f.ifs["xfrm-aws-2"] == nil {
		t.Errorf("the other's link was changed, or the second tunnel was not made: %+v", f.ifs)
	}
}

func TestSetValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Interface
		want string
	}{
		{"empty name", []Interface{{IfID: 1}}, "interface name"},
		{"long name", []Interface{{Name: "xfrm-a-very-long-name", IfID: 1}}, "1 to 15 bytes"},
		{"dot", []Interface{{Name: "xfrm.1", IfID: 1}}, "'.'"},
		{"if_id 0", []Interface{{Name: "x1"}}, "if_id 0 is reserved"},
		{"MTU", []Interface{{Name: "x1", IfID: 1, MTU: 100}}, "MTU 100"},
		{"twice", []Interface{{Name: "x1", IfID: 1}, {Name: "x1", IfID: 2}}, "wanted twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			err := (&Tunnels{k: f}).Set(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if len(f.calls) != 0 {
				t.Errorf("an invalid list changed the kernel: %q", f.calls)
			}
		})
	}
}

func TestSetRoutesMovesOnlyWhatChanged(t *testing.T) {
	f := newFake()
	tn := &Tunnels{k: f}
	if err := tn.Set([]Interface{tun1, tun2}); err != nil {
		t.Fatal(err)
	}
	lan, lan2, old := netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("10.3.0.0/24"), netip.MustParsePrefix("10.9.0.0/24")
	f.rts[old] = tun2.Name // routed before, no longer wanted
	f.calls = nil
	if err := tn.SetRoutes(map[netip.Prefix]string{lan: tun1.Name, lan2: tun1.Name}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"route 10.2.0.0/16 xfrm-aws-1", "route 10.3.0.0/24 xfrm-aws-1", "unroute 10.9.0.0/24 xfrm-aws-2"}; !slices.Equal(f.calls, want) {
		t.Fatalf("calls %q, want %q", f.calls, want)
	}
	// The failover: both prefixes move to tunnel 2, each in one replacement.
	f.calls = nil
	if err := tn.SetRoutes(map[netip.Prefix]string{lan: tun2.Name, lan2: tun2.Name}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"route 10.2.0.0/16 xfrm-aws-2", "route 10.3.0.0/24 xfrm-aws-2"}; !slices.Equal(f.calls, want) {
		t.Fatalf("calls %q, want %q", f.calls, want)
	}
	f.calls = nil
	if err := tn.SetRoutes(map[netip.Prefix]string{lan: tun2.Name, lan2: tun2.Name}); err != nil || len(f.calls) != 0 {
		t.Fatalf("the same routes again: %q, %v", f.calls, err)
	}
	if got, _ := tn.Routes(); len(got) != 2 || got[lan] != tun2.Name {
		t.Errorf("Routes() = %v", got)
	}
	for _, bad := range []map[netip.Prefix]string{
		{lan: "wan0"}, // not a tunnel interface of ours
		{netip.MustParsePrefix("10.2.0.1/16"): tun1.Name}, // not a network prefix
	} {
		if err := tn.SetRoutes(bad); err == nil || !errors.Is(err, ErrXFRM) {
			t.Errorf("SetRoutes(%v) = %v, want an error", bad, err)
		}
	}
}

// RemoveStale deletes only the SAs of the listed interfaces installed no later than the cut's second and not
// kept by SPI: never a policy-based SA, another interface's, or one the running charon made.
func TestRemoveStaleSAs(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 500e6, time.UTC)
	old, same, later := start.Add(-10*time.Second).Truncate(time.Second), start.Truncate(time.Second), start.Add(time.Second)
	f := newFake()
	f.sas = []SAStats{
		{SPI: 1, IfID: 7, Added: old},  // the dead charon's: goes
		{SPI: 2, IfID: 8, Added: old},  // the dead charon's, other tunnel: goes
		{SPI: 3, IfID: 7, Added: same}, // same second as the start, the running charon's: stays
		{SPI: 7, IfID: 7, Added: same}, // same second as the start, not the running charon's: goes
		{SPI: 4, IfID: 7, Added: later},
		{SPI: 5, IfID: 0, Added: old}, // policy-based, not ours to judge
		{SPI: 6, IfID: 9, Added: old}, // an interface not listed
	}
	tn := &Tunnels{k: f}
	n, err := tn.RemoveStale([]uint32{7, 8}, map[uint32]bool{3: true, 4: true}, start)
	if err != nil || n != 3 {
		t.Fatalf("RemoveStale = %d, %v; want 3", n, err)
	}
	var left []uint32
	for _, s := range f.sas {
		left = append(left, s.SPI)
	}
	if !slices.Equal(left, []uint32{3, 4, 5, 6}) {
		t.Errorf("SAs left: %v, want [3 4 5 6]", left)
	}
}
