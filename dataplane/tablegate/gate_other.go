//go:build !linux

package tablegate

import "errors"

// Open fails off Linux.
func Open(string) (*Gate, error) { return nil, errors.New("tablegate: only Linux is supported") }
