//go:build !linux

package ike

import (
	"errors"
	"net/netip"
)

type addrManager struct{}

func newAddrManager(string) (*addrManager, error) { return nil, errors.New("ike: needs Linux") }

func (m *addrManager) sync([]netip.Addr) error { return nil }
func (m *addrManager) close()                  {}
