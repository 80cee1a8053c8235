package sourceaddr

import (
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := Of(netip.MustParseAddr(tt.addr)); got.String() != tt.want {
			t.Errorf("Of(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
	if got := Of(netip.Addr{}); got.IsValid() {
		t.Errorf("Of(zero) = %s, want the zero prefix", got)
	}
}
