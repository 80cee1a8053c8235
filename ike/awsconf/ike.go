package awsconf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"toride/ike"
)

// ImportOptions completes what the cloud's file does not say.
type ImportOptions struct {
	// Name is the connection's name (its key in ike.Config.Connections).
	Name string
	// LocalNetworks are the site's prefixes; RemoteNetworks the cloud's (needed for static routing: the
	// files do not carry them).
	LocalNetworks  []netip.Prefix
	RemoteNetworks []netip.Prefix
	// LocalAddress is the appliance's own outside address. Zero means the customer gateway address of the
	// file (no NAT in front of the appliance). Behind a NAT, give the private address: the file's address then
	// stays the IKE identity the cloud expects.
	LocalAddress netip.Addr
}

// IKEConnection turns c into the connection as the configuration holds it, its tunnels named tunnel1, tunnel2
// in the file's order. Only what the file says is set; the rest keeps its default. The result still goes
// through ike.Config.Validate.
func (c *Connection) IKEConnection(o ImportOptions) (*ike.Connection, error) {
	if len(c.Tunnels) == 0 {
		return nil, errors.New("awsconf: the file describes no tunnel")
	}
	conn := &ike.Connection{
		LocalNetworks:  slices.Clone(o.LocalNetworks),
		RemoteNetworks: slices.Clone(o.RemoteNetworks),
		Routing:        ike.RoutingStatic,
		Tunnels:        map[string]*ike.Tunnel{},
	}
	if b := c.Tunnels[0].BGP; b != nil {
		conn.Routing = ike.RoutingBGP
		conn.BGP = ike.BGP{LocalASN: b.CustomerASN, RemoteASN: b.CloudASN, HoldTime: ike.Duration(b.HoldTime)}
	}
	for i, t := range c.Tunnels {
		if (t.BGP != nil) != (conn.Routing == ike.RoutingBGP) {
			return nil, fmt.Errorf("awsconf: tunnel %d and tunnel 1 disagree on BGP or static routing", i+1)
		}
		local := o.LocalAddress
		if !local.IsValid() {
			local = t.CustomerGatewayOutside
		}
		it := &ike.Tunnel{
			LocalAddress:  local,
			LocalID:       t.CustomerGatewayOutside.String(),
			RemoteAddress: t.VPNGatewayOutside,
			PreSharedKey:  ike.PSK(t.PreSharedKey),
			InsideCIDR:    t.CustomerGatewayInside.Masked(),
			IKEVersion:    t.IKEVersion,
			IKE:           phase(t.Phase1),
			ESP:           phase(t.Phase2),
			DisablePFS:    t.Phase2.DHGroup == 0,
			MTU:           t.MTU,
			TCPMSS:        t.TCPMSS,
		}
		if t.DPDInterval > 0 {
			it.DPD.Delay = ike.Duration(t.DPDInterval)
			it.DPD.Timeout = ike.Duration(max(t.DPDInterval*time.Duration(max(t.DPDRetries, 1)), t.DPDInterval))
		}
		conn.Tunnels[fmt.Sprintf("tunnel%d", i+1)] = it
	}
	return conn, nil
}

func phase(p Phase) ike.Phase {
	out := ike.Phase{Lifetime: ike.Duration(p.Lifetime)}
	if p.Encryption != "" {
		out.Encryption = []ike.Encryption{p.Encryption}
	}
	if p.Integrity != "" {
		out.Integrity = []ike.Integrity{p.Integrity}
	}
	if p.DHGroup != 0 {
		out.DHGroups = []int{p.DHGroup}
	}
	return out
}
