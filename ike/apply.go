package ike

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Applying the desired configuration: load into charon what it lacks, unload what is no longer wanted, keep the
// firewall rules and the inside addresses in step, and initiate what should be up.

// set stores cfg as the desired state and applies it.
func (e *engine) set(ctx context.Context, cfg Config) error {
	e.plans = plan(cfg, e.backend, e.mode)
	e.haveCfg = true
	if e.client == nil {
		e.applied = false
		return errNotConnected
	}
	err := e.apply(ctx)
	e.resync(ctx)
	return err
}

// apply loads the desired plans into the running charon and removes what is no longer desired.
func (e *engine) apply(ctx context.Context) error {
	if e.client == nil {
		return errNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, 3*callTimeout)
	defer cancel()
	desired := map[string]*tunnelPlan{}
	conns := map[string]*connState{}
	var inside []netip.Addr
	for _, cp := range e.plans {
		cs := e.conns[cp.name]
		if cs == nil {
			cs = &connState{active: -1}
		}
		cs.plan = cp
		conns[cp.name] = cs
		for _, tp := range cp.tunnels {
			desired[tp.name] = tp
			if e.mode != ModeRouteBased {
				// Route-based tunnels carry their inside address on their own interface.
				inside = append(inside, tp.localInside)
			}
		}
	}
	e.conns = conns
	var errs []error
	for name, st := range e.tunnels {
		if desired[name] == nil {
			errs = append(errs, e.removeTunnel(ctx, st))
			delete(e.tunnels, name)
		}
	}
	if err := e.addrs.sync(inside); err != nil {
		errs = append(errs, fmt.Errorf("inside addresses: %w", err))
	}
	if e.mode == ModeRouteBased {
		// Before the connections are loaded: a CHILD_SA may install before the interface it is bound to exists,
		// but the probes need the inside address on it.
		if err := e.applyLinks(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, cp := range e.plans {
		for _, tp := range cp.tunnels {
			st := e.tunnels[tp.name]
			if st == nil {
				st = &tunnelState{lastInit: map[string]time.Time{}, terminating: map[uint64]bool{}}
				e.tunnels[tp.name] = st
			}
			st.plan, st.conn = tp, cp
			if err := e.load(ctx, st); err != nil {
				errs = append(errs, err)
			}
			if err := e.ensureProber(st); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := e.applyFirewall(ctx); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	e.applied = err == nil
	e.setErr(err)
	return err
}

// load loads a tunnel's secret and connection if charon does not have this exact version yet. A changed tunnel's
// IKE_SA is torn down so that it is re-established with the new settings.
func (e *engine) load(ctx context.Context, st *tunnelState) error {
	p := st.plan
	old, had := e.loaded[p.name]
	if had && old == p.hash {
		return nil
	}
	if err := e.client.LoadShared(ctx, p.secret); err != nil {
		return fmt.Errorf("tunnel %s: %w", p.name, err)
	}
	if err := e.client.LoadConn(ctx, p.name, p.ikeConn); err != nil {
		return fmt.Errorf("tunnel %s: %w", p.name, err)
	}
	e.loaded[p.name] = p.hash
	if had {
		e.log.Info("tunnel changed; re-establishing", "tunnel", p.name)
		for _, id := range st.ikeIDs {
			if err := e.client.TerminateIKE(ctx, id, true); err != nil {
				e.log.Warn("terminate changed tunnel", "tunnel", p.name, "err", err)
			}
		}
		st.tunnelSAs = tunnelSAs{}
	}
	return nil
}

func (e *engine) removeTunnel(ctx context.Context, st *tunnelState) error {
	name := st.plan.name
	e.log.Info("removing tunnel", "tunnel", name)
	if st.prober != nil {
		st.prober.Close()
		st.prober = nil
	}
	if e.client == nil {
		return nil
	}
	var errs []error
	for _, id := range st.ikeIDs {
		if err := e.client.TerminateIKE(ctx, id, true); err != nil {
			errs = append(errs, err)
		}
	}
	if err := e.client.UnloadConn(ctx, name); err != nil && !strings.Contains(err.Error(), "not found") {
		errs = append(errs, err)
	}
	if err := e.client.UnloadShared(ctx, st.plan.secret.ID); err != nil && !strings.Contains(err.Error(), "not found") {
		errs = append(errs, err)
	}
	delete(e.loaded, name)
	return errors.Join(errs...)
}

// unloadStrays unloads connections and secrets charon has that are not ours any more (left by an earlier
// configuration in the same charon).
func (e *engine) unloadStrays(ctx context.Context) {
	if e.client == nil {
		return
	}
	names, err := e.client.ListConns(ctx)
	if err != nil {
		return
	}
	for _, n := range names {
		if _, ok := e.loaded[n]; !ok {
			e.client.UnloadConn(ctx, n)
		}
	}
	ids, err := e.client.GetShared(ctx)
	if err != nil {
		return
	}
	for _, id := range ids {
		name, ok := strings.CutPrefix(id, "toride-")
		if _, loaded := e.loaded[name]; ok && !loaded {
			e.client.UnloadShared(ctx, id)
		}
	}
}

func (e *engine) applyFirewall(ctx context.Context) error {
	if e.firewall == nil {
		return nil
	}
	cfg := Config{Connections: map[string]*Connection{}}
	for _, cp := range e.plans {
		c := &Connection{Tunnels: map[string]*Tunnel{}}
		for _, tp := range cp.tunnels {
			ra, _ := netip.ParseAddr(tp.ikeConn.RemoteAddrs[0])
			c.Tunnels[tp.name] = &Tunnel{RemoteAddress: ra}
		}
		cfg.Connections[cp.name] = c
	}
	rules := FirewallRules(cfg)
	h := hashOf(rules)
	if e.fwSet && h == e.fwHash {
		return nil
	}
	if err := e.firewall.Set(ctx, FirewallOwner, rules); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	e.fwHash, e.fwSet = h, true
	return nil
}

func (e *engine) initiate(ctx context.Context, now time.Time, st *tunnelState, child string) {
	if now.Sub(st.lastInit[child]) < initiateRetry {
		return
	}
	st.lastInit[child] = now
	if err := e.client.Initiate(ctx, st.plan.name, child); err != nil {
		e.log.Warn("initiate failed", "tunnel", st.plan.name, "child", child, "err", err)
	}
}

// bringUp initiates what a tunnel with StartupStart lacks: the IKE_SA (with the probe CHILD_SA), then the
// CHILD_SAs on an established IKE_SA.
func (e *engine) bringUp(ctx context.Context, now time.Time, st *tunnelState) {
	if !st.plan.start {
		return
	}
	if st.ike == nil {
		if st.absentSince.IsZero() {
			st.absentSince = now
		}
		// A tunnel never seen up, or torn down by us, is initiated at once; one that vanished by itself gets
		// a moment, since charon may be re-creating it (DPD restart).
		if !st.seenIKE || now.Sub(st.absentSince) >= absentGrace {
			e.initiate(ctx, now, st, st.plan.probeChild)
		}
		return
	}
	st.seenIKE = true
	st.absentSince = time.Time{}
	if st.ike.State != "ESTABLISHED" {
		return
	}
	if st.probe == nil {
		e.initiate(ctx, now, st, st.plan.probeChild)
	}
	if st.plan.netChild != "" && st.plan.netChild != st.plan.probeChild && len(st.nets) == 0 {
		// On libipsec this makes the tunnel the carrier; steering moves traffic back if it should not be.
		e.initiate(ctx, now, st, st.plan.netChild)
	}
}
