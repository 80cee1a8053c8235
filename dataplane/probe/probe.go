// Package probe finds out what the running kernel can do for IPsec: whether it has XFRM netlink at all, whether
// it can install ESP SAs (the kernel fast path), and whether it can create XFRM interfaces (route-based tunnels).
//
// Detection never touches the real system: it runs in a throw-away network namespace created for the purpose,
// (the probing thread moves back to its own namespace afterwards), and tries the real operations there (adding an ESP SA, creating
// an xfrm interface). Module autoloading works from there, so "not there" means the kernel cannot.
//
// Detect is safe for concurrent use; it needs CAP_SYS_ADMIN (to create the namespace) and CAP_NET_ADMIN.
package probe

import (
	"context"
	"errors"
)

// ErrProbe is wrapped by Detect's errors.
var ErrProbe = errors.New("probe")

// Capabilities is what the kernel offers. The zero value claims nothing.
type Capabilities struct {
	// XFRM is true when the XFRM netlink interface (xfrm_user) answers.
	XFRM bool `json:"xfrm"`
	// ESP is true when the kernel accepts an ESP SA (tunnel mode, AES-CBC/HMAC-SHA256): charon can use
	// kernel-netlink. When false, charon needs kernel-libipsec.
	ESP bool `json:"esp"`
	// XFRMInterfaces is true when an xfrm interface can be created (route-based tunnels with if_id).
	XFRMInterfaces bool `json:"xfrm_interfaces"`
	// Notes says why a capability is missing, for status displays.
	Notes []string `json:"notes,omitempty"`
}

// Detect probes the kernel. It returns an error only when it cannot probe at all (no privileges); missing
// features are reported in Capabilities.
func Detect(ctx context.Context) (Capabilities, error) {
	if err := ctx.Err(); err != nil {
		return Capabilities{}, err
	}
	return detect()
}
