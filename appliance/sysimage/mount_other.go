//go:build !linux

package sysimage

import "errors"

func mountSquashfs(string, string) (func() error, error) {
	return nil, errors.New("mounting a squashfs needs Linux")
}
