package timesync

import (
	"time"

	"golang.org/x/sys/unix"
)

// SystemClock is the kernel's real-time clock. Correcting it needs CAP_SYS_TIME and changes the time of the whole
// machine: only the appliance, which owns its machine, uses it.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// Step implements Clock: it sets the clock to now plus d.
func (SystemClock) Step(d time.Duration) error {
	ts := unix.NsecToTimespec(time.Now().Add(d).UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// Slew implements Clock: the kernel drifts the clock by d gradually, as adjtime(3) does.
func (SystemClock) Slew(d time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: d.Microseconds()}
	_, err := unix.Adjtimex(&tx)
	return err
}
