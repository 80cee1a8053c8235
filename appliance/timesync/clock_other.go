//go:build !linux

package timesync

import (
	"errors"
	"time"
)

var errNoClock = errors.New("timesync: setting the clock needs Linux")

// SystemClock is the machine's clock; off Linux it can be read, not corrected.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// Step implements Clock.
func (SystemClock) Step(time.Duration) error { return errNoClock }

// Slew implements Clock.
func (SystemClock) Slew(time.Duration) error { return errNoClock }
