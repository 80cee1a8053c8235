// Package ifname checks interface names before they reach the kernel, by the kernel's own rule (dev_valid_name in
// net/core/dev.c), so a name it would refuse is refused with the rule named instead of a bare EINVAL.
package ifname

import (
	"fmt"
	"strings"
	"unicode"
)

// MaxLen is the longest interface name: IFNAMSIZ less the terminating NUL.
const MaxLen = 15

// Check returns nil when name can name a Linux interface: 1 to MaxLen bytes, not "." or "..", and none of '/',
// ':' or white space. Otherwise its error names name and the rule.
func Check(name string) error {
	if name == "" || len(name) > MaxLen || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) }) {
		return fmt.Errorf("interface name %q: want 1 to %d bytes, none of '/', ':' or spaces", name, MaxLen)
	}
	return nil
}
