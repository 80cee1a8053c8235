// Package ipsecsvc is the appliance's site-to-site IPsec: the "ipsec" component, which runs the IPsec engine
// (ike) while connections are configured, and its API (/api/v1/ipsec: status, and the import of the cloud's
// configuration file).
package ipsecsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"toride/appliance/config"
	"toride/appliance/health"
	"toride/ike"
)

// Component is the "ipsec" component: it runs the IPsec engine (and so charon) only while connections are
// configured, and hands it the configuration's ipsec section, which is the engine's own type.
type Component struct {
	opts   ike.Opts // the engine's options
	health *health.Tracker
	log    *slog.Logger

	mu  sync.Mutex
	svc *ike.Service
}

// New returns the ipsec component; it starts the engine (with opts) when a connection is configured.
func New(opts ike.Opts, h *health.Tracker, log *slog.Logger) *Component {
	return &Component{opts: opts, health: h, log: log}
}

// Name implements the orchestrator's Component.
func (c *Component) Name() string { return "ipsec" }

// Apply implements Component.
func (c *Component) Apply(ctx context.Context, _, new *config.Config) error {
	want := new.IPsec
	enabled := len(want.ConnectionNames())
	c.mu.Lock()
	defer c.mu.Unlock()
	if enabled == 0 {
		if c.svc != nil {
			err := c.svc.Close()
			c.svc = nil
			c.health.Remove(c.Name())
			return err
		}
		return nil
	}
	if c.svc == nil {
		svc, err := ike.New(ctx, c.opts)
		if err != nil {
			return fmt.Errorf("starting the IPsec engine: %w", err)
		}
		c.svc = svc
	}
	err := c.svc.Set(ctx, want)
	switch {
	case errors.Is(err, ike.ErrNotReady):
		// Kept by the engine and applied as soon as charon answers.
		c.health.Set(c.Name(), health.Pending, "charon is starting; the connections are loaded when it answers")
		return nil
	case err != nil:
		return err
	}
	c.health.Set(c.Name(), health.OK, fmt.Sprintf("%d connection(s)", enabled))
	return nil
}

// Status is the engine's status, or nil when no connection is configured.
func (c *Component) Status() *ike.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svc == nil {
		return nil
	}
	st := c.svc.Status()
	return &st
}

// Close stops the engine and its charon.
func (c *Component) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svc == nil {
		return nil
	}
	err := c.svc.Close()
	c.svc = nil
	return err
}
