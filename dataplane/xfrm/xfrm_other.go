//go:build !linux

package xfrm

import "fmt"

// Open fails off Linux: xfrm interfaces are Linux's.
func Open(nsPath string) (*Tunnels, error) {
	return nil, fmt.Errorf("%w: xfrm interfaces need Linux", ErrXFRM)
}
