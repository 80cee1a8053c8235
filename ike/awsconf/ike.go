package awsconf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"toride/ike"
)

// ImportOptions completes what the cloud's file does not say.
type ImportOptions struct {
	// Name is the connection's name in ike.Config.
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

// IKEConnection turns c into the engine's connection. The result still goes through ike.Config.Validate.
func (c *Connection) IKEConnection(o ImportOptions) (ike.Connection, error) {
	if len(c.Tunnels) == 0 {
		return ike.Connection{}, errors.New("awsconf: the file describes no tunnel")
	}
	conn := ike.Connection{
		Name:           o.Name,
		LocalNetworks:  append([]netip.Prefix(nil), o.LocalNetworks...),
		RemoteNetworks: append([]netip.Prefix(nil), o.RemoteNetworks...),
		Routing:        ike.Routing{Mode: ike.RoutingStatic},
	}
	if b := c.Tunnels[0].BGP; b != nil {
		conn.Routing = ike.Routing{Mode: ike.RoutingBGP, LocalASN: b.CustomerASN, RemoteASN: b.CloudASN, HoldTime: b.HoldTime}
	}
	for i, t := range c.Tunnels {
		if (t.BGP != nil) != (conn.Routing.Mode == ike.RoutingBGP) {
			return ike.Connection{}, fmt.Errorf("awsconf: tunnel %d and tunnel 1 disagree on BGP or static routing", i+1)
		}
		local := o.LocalAddress
		if !local.IsValid() {
			local = t.CustomerGatewayOutside
		}
		it := ike.Tunnel{
			LocalAddress:  local,
			LocalID:       t.CustomerGatewayOutside.String(),
			RemoteAddress: t.VPNGatewayOutside,
			PSK:           t.PreSharedKey,
			InsideCIDR:    t.CustomerGatewayInside.Masked(),
			IKEVersion:    t.IKEVersion,
			Phase1:        phase(t.Phase1),
			Phase2:        phase(t.Phase2),
			DisablePFS:    t.Phase2.DHGroup == 0,
		}
		if t.DPDInterval > 0 {
			it.DPD.Delay = t.DPDInterval
			it.DPD.Timeout = max(t.DPDInterval*time.Duration(max(t.DPDRetries, 1)), t.DPDInterval)
		}
		conn.Tunnels = append(conn.Tunnels, it)
	}
	return conn, nil
}

func phase(p Phase) ike.Phase {
	out := ike.Phase{Lifetime: p.Lifetime}
	if p.Encryption != "" {
		out.Encryption = []ike.Encryption{ike.Encryption(p.Encryption)}
	}
	if p.Integrity != "" {
		out.Integrity = []ike.Integrity{ike.Integrity(p.Integrity)}
	}
	if p.DHGroup != 0 {
		out.DHGroups = []int{p.DHGroup}
	}
	return out
}
