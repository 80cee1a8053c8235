package appliance

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

// ipsecComponent is the "ipsec" component: it runs the IPsec engine (and so charon) only while connections are
// configured, and hands it the configuration's ipsec section, which is the engine's own type.
type ipsecComponent struct {
	opts   ike.Opts // the engine's options; RunDir, Firewall and Logger are set by the System
	health *health.Tracker
	log    *slog.Logger

	mu  sync.Mutex
	svc *ike.Service
}

func (c *ipsecComponent) Name() string { return "ipsec" }

// Apply implements Component.
func (c *ipsecComponent) Apply(ctx context.Context, _, new *config.Config) error {
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
func (c *ipsecComponent) Status() *ike.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svc == nil {
		return nil
	}
	st := c.svc.Status()
	return &st
}

// Close stops the engine and its charon.
func (c *ipsecComponent) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svc == nil {
		return nil
	}
	err := c.svc.Close()
	c.svc = nil
	return err
}
