package system

import (
	"context"
	"fmt"
	"log/slog"
	"math"

	"toride/appliance/config"
	"toride/appliance/health"
	"toride/appliance/timesync"
)

// maxSkew is the clock offset past which the appliance warns: TOTP allows one 30 s step either way, and the
// cloud's SSL-VPN guides ask for client and server clocks within minutes of each other.
const maxSkew = 10_000 // ms

// TimeSync is the "ntp" component: it hands the configured servers to the SNTP syncer, and turns the syncer's
// results into health.
type TimeSync struct {
	syncer *timesync.Syncer
	health *health.Tracker
}

// NewTimeSync returns the ntp component. With manageClock it sets the system clock; otherwise it only measures
// the offset (a development machine's clock belongs to its host).
func NewTimeSync(h *health.Tracker, log *slog.Logger, manageClock bool) *TimeSync {
	c := &TimeSync{health: h}
	o := timesync.Options{Logger: log, OnStatus: c.report}
	if manageClock {
		o.Clock = timesync.SystemClock{}
	}
	c.syncer = timesync.New(o)
	return c
}

// Status is the syncer's status, for the API's status.
func (c *TimeSync) Status() timesync.Status { return c.syncer.Status() }

// Name implements the orchestrator's Component.
func (c *TimeSync) Name() string { return "ntp" }

// Apply implements Component.
func (c *TimeSync) Apply(_ context.Context, _, new *config.Config) error {
	c.syncer.SetServers(new.System.NTP.Servers)
	if len(new.System.NTP.Servers) == 0 {
		c.health.Remove(c.Name())
	}
	return nil
}

// report is the syncer's OnStatus.
func (c *TimeSync) report(st timesync.Status) {
	switch {
	case len(st.Servers) == 0:
		c.health.Remove(c.Name())
	case !st.Synchronized:
		c.health.Set(c.Name(), health.Degraded, "no NTP server answered; the clock is not checked")
	case !st.ManagesClock && math.Abs(st.OffsetMs) > maxSkew:
		c.health.Set(c.Name(), health.Degraded, fmt.Sprintf("the clock is %.1f s off the NTP servers; TOTP codes and certificates may be refused (torided does not set the clock here: run it with --manage-clock, or fix the host's time)", st.OffsetMs/1000))
	default:
		c.health.Set(c.Name(), health.OK, fmt.Sprintf("offset %.1f ms", st.OffsetMs))
	}
}

// Close stops the syncer.
func (c *TimeSync) Close() error {
	c.syncer.Close()
	return nil
}
