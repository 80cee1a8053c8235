// Package health keeps the state of each part of the appliance as data that the API and the shell show: a part
// reports what it is doing, and anyone can read a snapshot. A Tracker is safe for concurrent use; its zero value
// is not usable, use New.
package health

import (
	"maps"
	"sync"
	"time"
)

// State is how a part is doing.
type State string

const (
	OK       State = "ok"       // doing what the configuration asks
	Pending  State = "pending"  // waiting for something outside (an interface that is not there yet)
	Degraded State = "degraded" // working, with a problem the message names
	Failed   State = "failed"   // not working
)

// Status is the state of one part.
type Status struct {
	State   State     `json:"state"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"`
}

// Tracker holds the status of every part, by name.
type Tracker struct {
	mu    sync.Mutex
	now   func() time.Time
	parts map[string]Status
}

// New returns an empty Tracker.
func New() *Tracker { return &Tracker{now: time.Now, parts: map[string]Status{}} }

// Set records a part's state; Since changes only when the state or message does.
func (t *Tracker) Set(part string, state State, message string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.parts[part]; ok && old.State == state && old.Message == message {
		return
	}
	t.parts[part] = Status{State: state, Message: message, Since: t.now().UTC()}
}

// Remove forgets a part.
func (t *Tracker) Remove(part string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.parts, part)
}

// Snapshot returns every part's status.
func (t *Tracker) Snapshot() map[string]Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.parts)
}

// Get returns one part's status.
func (t *Tracker) Get(part string) (Status, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.parts[part]
	return s, ok
}
