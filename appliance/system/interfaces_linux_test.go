package system

import (
	"slices"
	"testing"
)

// TestListInterfaces: the namespace's loopback is listed up, with its address, its MTU and counters that grow.
func TestListInterfaces(t *testing.T) {
	list, err := ListInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(s InterfaceStatus) bool { return s.Name == "lo" })
	if i < 0 {
		t.Fatalf("no lo in %+v", list)
	}
	lo := list[i]
	if !lo.Up || lo.MTU == 0 || !slices.Contains(lo.Addresses, "127.0.0.1/8") {
		t.Errorf("lo: %+v", lo)
	}
	if !slices.IsSortedFunc(list, func(a, b InterfaceStatus) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	}) {
		t.Errorf("not sorted by name: %+v", list)
	}
}
