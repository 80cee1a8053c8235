//go:build !linux

package xfrm

import (
	"context"
	"fmt"
)

// Watch fails off Linux.
func (t *Tunnels) Watch(ctx context.Context, fn func(Event)) error {
	return fmt.Errorf("%w: the XFRM monitor needs Linux", ErrXFRM)
}
