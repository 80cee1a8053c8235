// Package flushset keeps the uplinks a batch of datagrams wrote to, so that a UDP reader flushes each of them once
// when the batch ends (see the engines' Uplink.Flush): a client's packets of one batch reach the LAN in one
// write, and the reader never waits with packets held.
package flushset

import "slices"

// Flusher is an uplink that holds packets until Flush.
type Flusher interface{ Flush() }

// Set is one reader's uplinks of the current batch. The zero value is ready; not safe for concurrent use.
type Set struct{ held []Flusher }

// Add notes that f holds packets of the batch.
func (s *Set) Add(f Flusher) {
	if !slices.Contains(s.held, f) {
		s.held = append(s.held, f)
	}
}

// Flush flushes every uplink noted since the last Flush, once each, and forgets them.
func (s *Set) Flush() {
	for i, f := range s.held {
		f.Flush()
		s.held[i] = nil
	}
	s.held = s.held[:0]
}
