// Package push frames and parses the control-channel text messages of OpenVPN's pull model (push.c): the
// client's PUSH_REQUEST, the server's PUSH_REPLY (split into several messages with push-continuation when long),
// AUTH_FAILED, RESTART, HALT and EXIT, and formats the common pushed options.
//
// Everything here is a pure function, safe for concurrent use.
package push

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Control message keywords.
const (
	Request     = "PUSH_REQUEST"
	ReplyPrefix = "PUSH_REPLY"
	AuthFailed  = "AUTH_FAILED"
	Restart     = "RESTART"
	Halt        = "HALT"
	Exit        = "EXIT"
)

// ErrBadOption is returned for an option that cannot be pushed or a reply that cannot be parsed.
var ErrBadOption = errors.New("push: bad option")

// bundleSize is OpenVPN's PUSH_BUNDLE_SIZE minus its safety margin: a client reads control messages into a
// 2048-byte buffer, and the server keeps each message under 1024 bytes.
const bundleSize = 1024 - 84

// MaxOptionLen bounds one option.
const MaxOptionLen = 512

// ValidOption checks that opt can be pushed: not empty, no comma (the separator), no NUL or newline.
func ValidOption(opt string) error {
	if opt == "" || len(opt) > MaxOptionLen || strings.ContainsAny(opt, ",\x00\n\r") {
		return fmt.Errorf("%w %q", ErrBadOption, opt)
	}
	return nil
}

// BuildReply frames options into one or more PUSH_REPLY messages, each under OpenVPN's bundle size; all but the
// last end with "push-continuation 2", the last with "push-continuation 1" when there are several.
func BuildReply(options []string) ([]string, error) {
	var msgs []string
	cur := ReplyPrefix
	for _, o := range options {
		if err := ValidOption(o); err != nil {
			return nil, err
		}
		if len(cur)+1+len(o) >= bundleSize && cur != ReplyPrefix {
			msgs = append(msgs, cur+",push-continuation 2")
			cur = ReplyPrefix
		}
		cur += "," + o
	}
	if len(msgs) > 0 {
		cur += ",push-continuation 1"
	}
	return append(msgs, cur), nil
}

// ParseReply splits a PUSH_REPLY message into its options and reports its push-continuation value (0 when
// absent, 1 last, 2 more to come). The continuation option itself is not returned.
func ParseReply(msg string) (options []string, continuation int, err error) {
	rest, ok := strings.CutPrefix(msg, ReplyPrefix)
	if !ok || (rest != "" && rest[0] != ',') {
		return nil, 0, fmt.Errorf("%w: not a %s", ErrBadOption, ReplyPrefix)
	}
	if rest == "" {
		return nil, 0, nil
	}
	for _, o := range strings.Split(rest[1:], ",") {
		if v, ok := strings.CutPrefix(o, "push-continuation "); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 2 {
				return nil, 0, fmt.Errorf("%w: %q", ErrBadOption, o)
			}
			continuation = n
			continue
		}
		if err := ValidOption(o); err != nil {
			return nil, 0, err
		}
		options = append(options, o)
	}
	return options, continuation, nil
}

// Netmask formats a prefix length as a dotted IPv4 netmask.
func Netmask(bits int) string {
	if bits < 0 || bits > 32 {
		bits = 32
	}
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return fmt.Sprintf("%d.%d.%d.%d", byte(m>>24), byte(m>>16), byte(m>>8), byte(m))
}

// Route formats a "route" option for an IPv4 network, or "route-ipv6" for IPv6.
func Route(p netip.Prefix) string {
	p = p.Masked()
	if p.Addr().Is4() {
		return fmt.Sprintf("route %s %s", p.Addr(), Netmask(p.Bits()))
	}
	return fmt.Sprintf("route-ipv6 %s", p)
}

// SplitMessages splits the plaintext the TLS session delivered into control messages: OpenVPN terminates each
// with a NUL and sends each in its own TLS record, but a record may hold several or none.
func SplitMessages(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}
