package ifname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true}, {"xfrm-aws-1", true}, {"eth0.100", true}, {"fifteen-bytes-1", true}, {"..a", true},
		{"", false}, {"sixteen-bytes-12", false}, {".", false}, {"..", false},
		{"a/b", false}, {"eth0:1", false}, {"a b", false}, {"a\tb", false}, {"a\n", false},
	} {
		err := Check(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "1 to 15 bytes") {
			t.Errorf("Check(%q) = %v: the rule is not named", tc.name, err)
		}
	}
}
