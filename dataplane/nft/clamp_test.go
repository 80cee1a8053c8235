package nft

import (
	"strings"
	"testing"
)

// TestClampCheck: a clamp names an interface the kernel could have (a VLAN's dot included) and an MSS a TCP
// segment can carry.
func TestClampCheck(t *testing.T) {
	for _, tc := range []struct {
		clamp Clamp
		want  string // "" when good
	}{
		{Clamp{Interface: "xfrm-aws-1", MSS: 1379}, ""},
		{Clamp{Interface: "eth0.100", MSS: 1379}, ""},
		{Clamp{MSS: 1379}, "1 to 15 bytes"},
		{Clamp{Interface: "a-very-long-interface", MSS: 1379}, "1 to 15 bytes"},
		{Clamp{Interface: "a/b", MSS: 1379}, "'/'"},
		{Clamp{Interface: "tun0", MSS: 100}, "MSS 100"},
	} {
		err := tc.clamp.check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.clamp, err, tc.want)
		}
	}
}
