//go:build linux

package nlconv

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestPrefixRoundTrip(t *testing.T) {
	for _, s := range []string{"10.1.0.0/16", "169.254.10.2/30", "2001:db8::/64", "0.0.0.0/0"} {
		p := netip.MustParsePrefix(s)
		if got, ok := Prefix(IPNet(p)); !ok || got != p {
			t.Errorf("%s → %v → %v, %v", s, IPNet(p), got, ok)
		}
	}
	mapped := &net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)} // 16-byte form
	if got, ok := Prefix(mapped); !ok || got != netip.MustParsePrefix("10.1.2.3/24") {
		t.Errorf("IPv4-mapped: %v, %v", got, ok)
	}
	if _, ok := Prefix(nil); ok {
		t.Error("nil converted")
	}
}

func TestRetryDump(t *testing.T) {
	tries := 0
	out, err := RetryDump(func() ([]int, error) {
		tries++
		if tries < 3 {
			return []int{1}, netlink.ErrDumpInterrupted
		}
		return []int{1, 2}, nil
	})
	if err != nil || len(out) != 2 || tries != 3 {
		t.Fatalf("out %v, err %v after %d tries", out, err, tries)
	}
	tries = 0
	_, err = RetryDump(func() ([]int, error) { tries++; return nil, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || tries != 5 {
		t.Fatalf("err %v after %d tries, want interrupted after 5", err, tries)
	}
}
