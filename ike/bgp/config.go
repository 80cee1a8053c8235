package bgp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"toride/ike/internal/fielderr"
)

// Config is what the speaker runs: our side's ASN and router ID, one neighbor per IPsec tunnel and the networks
// announced to every neighbor. The zero value of each optional field means its default (FillDefaults).
type Config struct {
	LocalASN uint32
	// RouterID is our BGP identifier; the zero value means the first IPv4 local address in neighbor order.
	RouterID netip.Addr
	// Neighbors are the sessions, one per tunnel; their names are unique.
	Neighbors []Neighbor
	// Networks are the appliance's local networks, announced to every neighbor.
	Networks []netip.Prefix
}

// Neighbor is one BGP session, run over one tunnel's inside addresses.
type Neighbor struct {
	// Name names the session, as the tunnel is named; the RouteSink gets it back with every route learned here.
	Name string
	// LocalAddress is the tunnel's inside address on our side: the session binds to it.
	LocalAddress netip.Addr
	// PeerAddress is the cloud's inside address of the tunnel.
	PeerAddress netip.Addr
	PeerASN     uint32
	// HoldTime is the BGP hold time in whole seconds, 3–65535 (keepalives every third of it); 0 means 30 s.
	HoldTime time.Duration
	// Password, if set, signs the session's TCP segments (TCP MD5, RFC 2385).
	Password Password
	// LocalPreference is given to every path learned from this neighbor; 0 means 100, BGP's default. The
	// neighbor with the highest one carries the traffic for a prefix both announce.
	LocalPreference uint32
	// Prepend is how many times our ASN is added in front of the AS path announced to this neighbor (0–10): the
	// cloud prefers the neighbor with the shortest path.
	Prepend int
}

// Password is a TCP MD5 key. It is a secret: fmt, slog and encoding/json show it as "****".
type Password string

// Format makes every fmt verb print "****" (or nothing when empty).
func (p Password) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.masked()) }

// LogValue makes slog print "****".
func (p Password) LogValue() slog.Value { return slog.StringValue(p.masked()) }

// MarshalJSON writes "****", so a Config logged as JSON does not leak it.
func (p Password) MarshalJSON() ([]byte, error) { return []byte(`"` + p.masked() + `"`), nil }

func (p Password) masked() string {
	if p == "" {
		return ""
	}
	return "****"
}

// Defaults, as the cloud's gateways use them.
const (
	DefaultHoldTime        = 30 * time.Second
	DefaultLocalPreference = 100
	MaxPrepend             = 10
	maxPasswordLen         = 80 // TCP_MD5SIG_MAXKEYLEN
)

// FillDefaults returns a copy with every unset field that has a default set. The neighbors and networks are
// copied, so the result shares nothing with c.
func (c Config) FillDefaults() Config {
	c.Neighbors = slices.Clone(c.Neighbors)
	c.Networks = slices.Clone(c.Networks)
	for i := range c.Neighbors {
		n := &c.Neighbors[i]
		if n.HoldTime == 0 {
			n.HoldTime = DefaultHoldTime
		}
		if n.LocalPreference == 0 {
			n.LocalPreference = DefaultLocalPreference
		}
	}
	if !c.RouterID.IsValid() {
		for _, n := range c.Neighbors {
			if n.LocalAddress.Is4() {
				c.RouterID = n.LocalAddress
				break
			}
		}
	}
	return c
}

// ErrInvalidConfig is wrapped by every validation error.
var ErrInvalidConfig = errors.New("bgp: invalid configuration")

// FieldError is one problem in a Config: which field (e.g. "neighbors.tunnel1.hold-time"), the offending value,
// which rule it broke and how to fix it. Passwords are described, never shown. errors.Is(err, ErrInvalidConfig)
// holds.
type FieldError = fielderr.Error

// ValidationError carries every problem Validate found, in the order of the fields.
type ValidationError = fielderr.List

// Validate reports every problem at once as a *ValidationError, or nil. It checks c as given, defaults unfilled.
func (c Config) Validate() error {
	var errs []*FieldError
	add := func(field, value, problem, fix string) {
		errs = append(errs, fielderr.New(ErrInvalidConfig, field, value, problem, fix))
	}
	checkASN := func(field string, asn uint32) {
		if asn == 0 || asn == 4294967295 {
			add(field, fmt.Sprint(asn), "an ASN must be 1–4294967294 (0 and 4294967295 are reserved)",
				"use the ASN of the configuration file, e.g. 65000 (private ASNs: 64512–65534, 4200000000–4294967294)")
		}
	}
	checkASN("local-asn", c.LocalASN)
	if c.RouterID.IsValid() && (!c.RouterID.Is4() || c.RouterID.IsUnspecified()) {
		add("router-id", c.RouterID.String(), "the router ID must be a non-zero IPv4 address",
			"use one of our IPv4 addresses, e.g. the first tunnel's inside address, or leave it unset")
	}
	names := map[string]bool{}
	peers := map[netip.Addr]string{}
	for i, n := range c.Neighbors {
		path := "neighbors." + n.Name
		if n.Name == "" {
			path = fmt.Sprintf("neighbors[%d]", i)
			add(path+".name", `""`, "a neighbor needs a name", "name it after its tunnel, e.g. tunnel1")
		} else if names[n.Name] {
			add(path+".name", n.Name, "two neighbors have this name", "give each tunnel's neighbor its own name")
		}
		names[n.Name] = true
		if !n.LocalAddress.IsValid() || n.LocalAddress.IsUnspecified() {
			add(path+".local-address", addrString(n.LocalAddress), "the session needs our inside address to bind to",
				"give the tunnel's inside address on our side, e.g. 169.254.10.2")
		}
		if !n.PeerAddress.IsValid() || n.PeerAddress.IsUnspecified() {
			add(path+".peer-address", addrString(n.PeerAddress), "the session needs the cloud's inside address",
				"give the tunnel's inside address on the cloud's side, e.g. 169.254.10.1")
		} else {
			if other, ok := peers[n.PeerAddress]; ok {
				add(path+".peer-address", n.PeerAddress.String(), "neighbor "+other+" has the same peer address",
					"each tunnel has its own inside /30: give this neighbor its tunnel's cloud-side address")
			}
			peers[n.PeerAddress] = n.Name
			if n.LocalAddress.IsValid() && n.LocalAddress.Is4() != n.PeerAddress.Is4() {
				add(path+".peer-address", n.PeerAddress.String(), "the local and peer addresses are of different families",
					"use the IPv4 (or the IPv6) inside addresses on both sides")
			}
			if n.LocalAddress == n.PeerAddress {
				add(path+".peer-address", n.PeerAddress.String(), "the peer address is our own local address",
					"the peer address is the cloud's side of the inside /30")
			}
		}
		checkASN(path+".peer-asn", n.PeerASN)
		if n.HoldTime != 0 {
			s := n.HoldTime / time.Second
			if n.HoldTime%time.Second != 0 || s < 3 || s > 65535 {
				add(path+".hold-time", n.HoldTime.String(), "the hold time must be whole seconds, 3–65535",
					"use the configuration file's hold time (the cloud uses 30 s), or leave it unset for 30 s")
			}
		}
		if len(n.Password) > maxPasswordLen {
			add(path+".password", fmt.Sprintf("(%d characters)", len(n.Password)), "a TCP MD5 key holds at most 80 characters",
				"use the configuration file's BGP password, or a shorter one on both sides")
		}
		if n.Prepend < 0 || n.Prepend > MaxPrepend {
			add(path+".prepend", fmt.Sprint(n.Prepend), fmt.Sprintf("the AS-path prepend count must be 0–%d", MaxPrepend),
				"use 0 on the preferred tunnel and 1–3 on the other")
		}
	}
	seen := map[netip.Prefix]bool{}
	for i, p := range c.Networks {
		field := fmt.Sprintf("networks[%d]", i)
		switch {
		case !p.IsValid():
			add(field, "(none)", "not a prefix", "write a network as address/length, e.g. 10.1.0.0/24")
		case p.Masked() != p:
			add(field, p.String(), "host bits are set", "write it as "+p.Masked().String())
		case seen[p]:
			add(field, p.String(), "announced twice", "list each local network once")
		}
		seen[p] = true
	}
	if len(errs) == 0 {
		return nil
	}
	return fielderr.NewList(ErrInvalidConfig, errs)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "(none)"
	}
	return a.String()
}
