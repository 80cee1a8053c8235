package tablegate

import (
	"net/netip"
	"slices"
	"testing"
)

// fakeKernel is the rules of a namespace in memory, with the order of the changes made to it.
type fakeKernel struct {
	pass  map[netip.Prefix]bool
	guard map[int]bool
	log   []string
}

func (k *fakeKernel) rules() ([]netip.Prefix, map[int]bool, error) {
	var out []netip.Prefix
	for p := range k.pass {
		out = append(out, p)
	}
	g := map[int]bool{}
	for f, on := range k.guard {
		g[f] = on
	}
	return out, g, nil
}
func (k *fakeKernel) addPass(p netip.Prefix) error {
	k.pass[p] = true
	k.log = append(k.log, "+"+p.String())
	return nil
}
func (k *fakeKernel) delPass(p netip.Prefix) error {
	delete(k.pass, p)
	k.log = append(k.log, "-"+p.String())
	return nil
}
func (k *fakeKernel) setGuard(f int, on bool) error {
	k.guard[f] = on
	if on {
		k.log = append(k.log, "+guard"+string(rune('0'+f)))
	} else {
		k.log = append(k.log, "-guard"+string(rune('0'+f)))
	}
	return nil
}
func (k *fakeKernel) close() {}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// TestSet: the guard goes in before any pass rule, a second Set changes only what differs, and nothing is left
// of the gate once it is given nothing.
func TestSet(t *testing.T) {
	k := &fakeKernel{pass: map[netip.Prefix]bool{}, guard: map[int]bool{}}
	g := &Gate{k: k}
	if err := g.Set(prefixes("10.2.0.0/24", "169.254.10.1/32", "10.2.0.7/24")); err != nil {
		t.Fatal(err)
	}
	if k.log[0] != "+guard4" || len(k.log) != 3 {
		t.Fatalf("first Set did %v, want the IPv4 guard first, then two pass rules (10.2.0.7/24 masked)", k.log)
	}
	k.log = nil
	if err := g.Set(prefixes("10.2.0.0/24", "10.3.0.0/16")); err != nil {
		t.Fatal(err)
	}
	slices.Sort(k.log)
	if want := []string{"+10.3.0.0/16", "-169.254.10.1/32"}; !slices.Equal(k.log, want) {
		t.Fatalf("second Set did %v, want %v", k.log, want)
	}
	k.log = nil
	if err := g.Set(prefixes("fd00:2::/64")); err != nil {
		t.Fatal(err)
	}
	if k.log[0] != "+guard6" || k.log[len(k.log)-1] != "-guard4" {
		t.Fatalf("moving to IPv6 did %v, want its guard first and the IPv4 guard last", k.log)
	}
	if err := g.Set(nil); err != nil {
		t.Fatal(err)
	}
	if len(k.pass) != 0 || k.guard[4] || k.guard[6] {
		t.Fatalf("after Set(nil): pass %v, guard %v", k.pass, k.guard)
	}
}
