package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
)

// Component is one part of the appliance that configuration reaches: the system settings, the API listener, the
// IPsec engine, the SSL-VPN concentrator. Apply moves it from the old effective configuration to the new one; it
// must be idempotent (Apply(old, new) twice is the same as once) and, when it fails, say why and leave as little
// changed as it can: the orchestrator then calls Apply(new, old) to return it.
type Component interface {
	Name() string
	Apply(ctx context.Context, old, new *config.Config) error
}

// Orchestrator applies a configuration change to every component in order, transactionally: if one fails, every
// component already reached, and the failing one, is returned to the old configuration in reverse order. It is
// safe for use by one committer at a time (the store serializes commits).
type Orchestrator struct {
	components []Component
	health     *health.Tracker
	log        *slog.Logger
}

// NewOrchestrator returns an orchestrator over components, applied in the order given.
func NewOrchestrator(h *health.Tracker, log *slog.Logger, components ...Component) *Orchestrator {
	return &Orchestrator{components: components, health: h, log: log}
}

// ApplyError is a commit that a component refused. The system is back at the old configuration unless
// RollbackErrors says which components could not return.
type ApplyError struct {
	Component      string
	Err            error
	RollbackErrors []error
}

func (e *ApplyError) Error() string {
	s := fmt.Sprintf("applying the configuration failed in %s: %v", e.Component, e.Err)
	if len(e.RollbackErrors) == 0 {
		return s + "; every component was returned to the running configuration"
	}
	var rb []string
	for _, err := range e.RollbackErrors {
		rb = append(rb, err.Error())
	}
	return s + "; returning to the running configuration also failed: " + strings.Join(rb, "; ")
}

func (e *ApplyError) Unwrap() error { return e.Err }

// Apply implements store.Applier.
func (o *Orchestrator) Apply(ctx context.Context, old, new *config.Config) error {
	for i, c := range o.components {
		start := time.Now()
		err := c.Apply(ctx, old, new)
		if err == nil {
			o.log.Debug("component applied", "component", c.Name(), "took", time.Since(start))
			continue
		}
		o.log.Warn("component refused the configuration; rolling back", "component", c.Name(), "err", err)
		ae := &ApplyError{Component: c.Name(), Err: err}
		// The rollback must run even if the caller has gone away.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		for j := i; j >= 0; j-- {
			back := o.components[j]
			if rerr := back.Apply(rctx, new, old); rerr != nil {
				o.log.Error("component could not return to the running configuration", "component", back.Name(), "err", rerr)
				o.health.Set(back.Name(), health.Failed, "rollback failed: "+rerr.Error())
				ae.RollbackErrors = append(ae.RollbackErrors, fmt.Errorf("%s: %w", back.Name(), rerr))
			}
		}
		cancel()
		return ae
	}
	return nil
}

// Boot implements store.Booter: at start every component gets the running configuration, and a component that
// fails is reported without undoing the others, so one broken part never leaves the box unreachable.
func (o *Orchestrator) Boot(ctx context.Context, cfg *config.Config) error {
	var errs []error
	empty := (&config.Config{}).WithDefaults()
	for _, c := range o.components {
		if err := c.Apply(ctx, empty, cfg); err != nil {
			o.log.Error("component failed to start with the running configuration", "component", c.Name(), "err", err)
			o.health.Set(c.Name(), health.Failed, err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
		}
	}
	return errors.Join(errs...)
}
