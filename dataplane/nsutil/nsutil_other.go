//go:build !linux

package nsutil

import "errors"

// OnLockedThread runs fn; other systems have no namespaces to enter.
func OnLockedThread(fn func() bool) { fn() }

// Enter fails: network namespaces need Linux.
func Enter(string) (func() bool, error) { return nil, errors.New("network namespaces need Linux") }

// Do runs fn; a namespace path is an error outside Linux.
func Do(path string, fn func() error) error {
	if path != "" {
		return errors.New("network namespaces need Linux")
	}
	return fn()
}
