// Package bgptest holds a recording bgp.RouteSink for tests of the speaker and of what uses it.
package bgptest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"toride/ike/bgp"
)

// Sink records Install and Withdraw calls and keeps the resulting table. It is safe for concurrent use; the
// zero value is an empty sink that accepts every call.
type Sink struct {
	mu     sync.Mutex
	routes map[netip.Prefix]bgp.Route
	calls  []string
	fail   error
	change chan struct{}
}

// Install records the call and sets the prefix's route, unless Fail set an error.
func (s *Sink) Install(_ context.Context, r bgp.Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.routes == nil {
		s.routes = map[netip.Prefix]bgp.Route{}
	}
	s.routes[r.Prefix] = r
	s.calls = append(s.calls, fmt.Sprintf("install %s via %s %s", r.Prefix, r.Neighbor, r.NextHop))
	s.changed()
	return nil
}

// Withdraw records the call and removes the prefix's route, unless Fail set an error.
func (s *Sink) Withdraw(_ context.Context, prefix netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.routes, prefix)
	s.calls = append(s.calls, fmt.Sprintf("withdraw %s", prefix))
	s.changed()
	return nil
}

func (s *Sink) changed() {
	if s.change != nil {
		close(s.change)
		s.change = nil
	}
}

// Fail makes every following call return err (nil: succeed again).
func (s *Sink) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// Routes returns the installed routes, by prefix.
func (s *Sink) Routes() map[netip.Prefix]bgp.Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Prefix]bgp.Route, len(s.routes))
	for k, v := range s.routes {
		out[k] = v
	}
	return out
}

// Route returns the installed route of prefix.
func (s *Sink) Route(prefix netip.Prefix) (bgp.Route, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.routes[prefix]
	return r, ok
}

// Calls returns every call so far, as "install PREFIX via NEIGHBOR NEXTHOP" or "withdraw PREFIX".
func (s *Sink) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// WaitFor waits until cond holds for the installed routes, or ctx ends; it reports whether cond held.
func (s *Sink) WaitFor(ctx context.Context, cond func(map[netip.Prefix]bgp.Route) bool) bool {
	for {
		s.mu.Lock()
		if s.change == nil {
			s.change = make(chan struct{})
		}
		ch := s.change
		s.mu.Unlock()
		if cond(s.Routes()) {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return cond(s.Routes())
		}
	}
}
