//go:build !linux

package api

import (
	"context"
	"errors"
)

// ServeUnix fails off Linux: the socket's credentials checks are Linux's.
func (s *Server) ServeUnix(ctx context.Context, path string, ready func()) error {
	return errors.New("api: serving the unix socket needs Linux")
}
