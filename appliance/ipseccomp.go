package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
	"toride/ike"
)

// ipsecComponent is the "ipsec" component: it runs the IPsec engine (and so charon) only while connections are
// configured, and hands it the configuration translated to the engine's types.
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
	want, _ := toIKE(new)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(want.Connections) == 0 {
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
	c.health.Set(c.Name(), health.OK, fmt.Sprintf("%d connection(s)", len(want.Connections)))
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

// ikeIndex remembers which configuration names ended up at which position of an ike.Config, to report the
// engine's problems under configuration paths.
type ikeIndex struct {
	conns   []string
	tunnels [][]string
}

var (
	encryptionOf = map[string]ike.Encryption{"aes128": ike.AES128, "aes256": ike.AES256, "aes128gcm16": ike.AES128GCM16, "aes256gcm16": ike.AES256GCM16}
	integrityOf  = map[string]ike.Integrity{"sha1": ike.SHA1, "sha256": ike.SHA2256, "sha384": ike.SHA2384, "sha512": ike.SHA2512}
)

// toIKE translates the effective configuration's enabled IPsec connections, in name order, tunnels in name order.
func toIKE(c *config.Config) (ike.Config, ikeIndex) {
	var out ike.Config
	var idx ikeIndex
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	for _, name := range slices.Sorted(maps.Keys(c.IPsec.Connections)) {
		conn := c.IPsec.Connections[name]
		if conn.Disable {
			continue
		}
		ic := ike.Connection{
			Name:           name,
			LocalNetworks:  conn.LocalNetworks,
			RemoteNetworks: conn.RemoteNetworks,
			Routing: ike.Routing{Mode: ike.RoutingMode(conn.Routing), LocalASN: conn.BGP.LocalASN, RemoteASN: conn.BGP.RemoteASN,
				HoldTime: sec(conn.BGP.HoldTime)},
			StartupAction: ike.StartupAction(conn.StartAction),
			Keepalive: ike.Keepalive{Disabled: conn.Keepalive.Disable, Interval: sec(conn.Keepalive.Interval),
				Timeout: sec(conn.Keepalive.Timeout), DownAfter: conn.Keepalive.DownAfter},
			Failover: ike.Failover{HoldDown: sec(conn.Failover.HoldDown)},
		}
		names := slices.Sorted(maps.Keys(conn.Tunnels))
		for i, tn := range names {
			t := conn.Tunnels[tn]
			if tn == conn.Failover.Preferred {
				ic.Failover.Preferred = i
			}
			it := ike.Tunnel{
				LocalAddress: t.LocalAddress, RemoteAddress: t.RemoteAddress, LocalID: t.LocalID, PSK: string(t.PreSharedKey),
				InsideCIDR: t.InsideCIDR, IKEVersion: t.IKEVersion, Phase1: phaseOf(t.IKE), Phase2: phaseOf(t.ESP),
				DisablePFS: t.DisablePFS, RekeyMargin: sec(t.RekeyMargin), RekeyFuzz: t.RekeyFuzz, ReplayWindow: t.ReplayWindow,
				DPD:             ike.DPD{Delay: sec(t.DPD.Delay), Timeout: sec(t.DPD.Timeout), Action: ike.DPDAction(t.DPD.Action)},
				KeepaliveTarget: t.KeepaliveTarget,
			}
			if t.NATTraversal == "force" {
				it.NATTraversal = ike.NATTForce
			}
			ic.Tunnels = append(ic.Tunnels, it)
		}
		out.Connections = append(out.Connections, ic)
		idx.conns = append(idx.conns, name)
		idx.tunnels = append(idx.tunnels, names)
	}
	return out, idx
}

func phaseOf(p config.Phase) ike.Phase {
	var out ike.Phase
	for _, e := range p.Encryption {
		out.Encryption = append(out.Encryption, encryptionOf[e])
	}
	for _, i := range p.Integrity {
		out.Integrity = append(out.Integrity, integrityOf[i])
	}
	out.DHGroups = p.DHGroups
	out.Lifetime = time.Duration(p.Lifetime) * time.Second
	return out
}

// validateIPsec checks the IPsec connections with the engine's rules (the cloud's), and reports each problem under
// its configuration path.
func validateIPsec(c *config.Config) config.Problems {
	// The SSL-VPN pools are not passed as reserved: the configuration's own check reports those overlaps.
	want, idx := toIKE(c)
	err := want.Validate()
	var ve *ike.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out config.Problems
	for _, fe := range ve.Errors {
		out = append(out, config.Problem{Path: idx.path(fe.Field), Value: fe.Value, Message: fe.Problem, Fix: fe.Fix})
	}
	return out
}

var (
	ikeField   = regexp.MustCompile(`^connections\[(\d+)\](?:\.tunnels\[(\d+)\])?(?:\.(.*))?$`)
	ikeIndexes = regexp.MustCompile(`\[\d+\]`)
)

// ikeLeaf names the engine's fields (indexes dropped) as the configuration does; any other name only has its
// underscores turned into dashes.
var ikeLeaf = map[string]string{
	"psk": "pre-shared-key", "local_networks": "local-network", "remote_networks": "remote-network",
	"startup_action": "start-action", "keepalive_target": "keepalive-target",
	"phase1": "ike", "phase2": "esp", "dh_groups": "dh-group", "routing": "bgp", "mode": "routing",
}

// path turns "connections[0].tunnels[1].phase2.dh_groups[2]" into "ipsec.connections.aws.tunnels.tunnel2.esp.dh-group".
func (x ikeIndex) path(field string) string {
	m := ikeField.FindStringSubmatch(field)
	if m == nil {
		return "ipsec." + field
	}
	ci, _ := strconv.Atoi(m[1])
	if ci >= len(x.conns) {
		return "ipsec." + field
	}
	parts := []string{"ipsec", "connections", x.conns[ci]}
	if ti, err := strconv.Atoi(m[2]); err == nil && ti < len(x.tunnels[ci]) {
		parts = append(parts, "tunnels", x.tunnels[ci][ti])
	}
	if m[3] != "" {
		for _, seg := range strings.Split(ikeIndexes.ReplaceAllString(m[3], ""), ".") {
			if to, ok := ikeLeaf[seg]; ok {
				seg = to
			}
			parts = append(parts, strings.ReplaceAll(seg, "_", "-"))
		}
	}
	return strings.Join(parts, ".")
}
