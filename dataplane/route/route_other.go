//go:build !linux

package route

import (
	"errors"
	"net/netip"

	"github.com/vishvananda/netns"
)

// Protocol is the rtnetlink protocol number on torided's routes ("proto 201" in `ip route`).
const Protocol = 201

// ErrUnreachable is a next hop that no connected network holds (yet).
var ErrUnreachable = errors.New("route: next hop is not on any connected network")

var errUnsupported = errors.New("route: only Linux is supported")

// Route is one static route.
type Route struct {
	Dst    netip.Prefix
	Via    netip.Addr
	Metric int
}

// Routes is unavailable off Linux.
type Routes struct{}

// Open fails off Linux.
func Open(netns.NsHandle) (*Routes, error) { return nil, errUnsupported }

func (r *Routes) Close()                 {}
func (r *Routes) Replace(Route) error    { return errUnsupported }
func (r *Routes) Delete(Route) error     { return errUnsupported }
func (r *Routes) List() ([]Route, error) { return nil, errUnsupported }
