//go:build !linux

package link

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/vishvananda/netns"
)

// ErrNotFound is returned for a link that does not exist.
var ErrNotFound = errors.New("link: no such interface")

var errUnsupported = errors.New("link: only Linux is supported")

// Links is unavailable off Linux.
type Links struct{}

// State is what the kernel says about a link.
type State struct {
	Name      string
	Index     int
	Up        bool
	Running   bool
	MTU       int
	Addresses []netip.Prefix
}

// Event is a link appearing or disappearing.
type Event struct {
	Name    string
	Present bool
}

// Open fails off Linux.
func Open(netns.NsHandle) (*Links, error) { return nil, errUnsupported }

// OpenPath fails off Linux.
func OpenPath(string) (*Links, error) { return nil, errUnsupported }

func (l *Links) Close()                                                     {}
func (l *Links) Get(string) (State, error)                                  { return State{}, errUnsupported }
func (l *Links) Names() ([]string, error)                                   { return nil, errUnsupported }
func (l *Links) SetMTU(string, int) error                                   { return errUnsupported }
func (l *Links) SetUp(string, bool) error                                   { return errUnsupported }
func (l *Links) AddAddress(string, netip.Prefix) error                      { return errUnsupported }
func (l *Links) AddLeasedAddress(string, netip.Prefix, time.Duration) error { return errUnsupported }
func (l *Links) DelAddress(string, netip.Prefix) error                      { return errUnsupported }
func (l *Links) SyncLabelled(string, string, []netip.Addr) error            { return errUnsupported }
func (l *Links) Watch(context.Context, func(Event)) error                   { return errUnsupported }
