package sslvpn

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"toride/sslvpn/pool"
)

// Settings is the `sslvpn` section of the appliance's configuration as it is: services (the local side an
// SSL-VPN serves) and servers (the concentrators). The struct tags say how each field appears in JSON and in set
// lines (see appliance/config). FillDefaults is its one set of defaults, Validate its rules; ServerConfig turns a
// server's settings into the part of the concentrator's ServerConfig they decide. A Settings is a plain value.
type Settings struct {
	Services map[string]*ServiceSettings `json:"services,omitempty" key:"name" help:"A local site served by SSL-VPN: its networks and outside address"`
	Servers  map[string]*ServerSettings  `json:"servers,omitempty" key:"name" help:"An SSL-VPN concentrator"`
}

// ServiceSettings is the local side an SSL-VPN server serves.
type ServiceSettings struct {
	ID              string         `json:"id,omitempty" help:"Identifier used by the REST API"`
	LocalNetworks   []netip.Prefix `json:"local-network,omitempty" help:"Network pushed to clients as a route"`
	ExternalAddress netip.Addr     `json:"external-address,omitzero" help:"Outside address clients connect to"`
}

// ServerSettings is one SSL-VPN concentrator: one TUN device, one address pool, OpenVPN and AnyConnect listeners.
// The fields whose default depends on others (max-sessions, max-sessions-per-user, cipher) are tagged
// default:"-": they have one, but no fixed one to show.
type ServerSettings struct {
	ID             string             `json:"id,omitempty" help:"Identifier used by the REST API"`
	Description    string             `json:"description,omitempty" help:"Free text"`
	Service        string             `json:"service,omitempty" help:"The VPN service (sslvpn service NAME) this server serves"`
	Pool           netip.Prefix       `json:"pool,omitzero" help:"Client address pool, e.g. 10.8.0.0/24"`
	Topology       pool.Topology      `json:"topology,omitempty" enum:"subnet|net30" help:"subnet: one address per client; net30: a /30 per client"`
	Flavor         Flavor             `json:"flavor,omitempty" enum:"small|large" help:"small: 20 sessions, large: 255"`
	MaxSessions    int                `json:"max-sessions,omitempty" default:"-" range:"1-65535" help:"Concurrent session limit (overrides the flavor)"`
	MaxPerUser     int                `json:"max-sessions-per-user,omitempty" default:"-" range:"1-65535" help:"Sessions one user may hold at once, all protocols together (default 2, or max-sessions when lower)"`
	RedirectAll    bool               `json:"redirect-gateway,omitempty" help:"Full tunnel: send all client traffic through the VPN"`
	DNS            []netip.Addr       `json:"dns,omitempty" help:"DNS server pushed to clients (a route to it is pushed too)"`
	OTP            bool               `json:"otp,omitempty" help:"Require a TOTP code as a second factor"`
	Ciphers        []Cipher           `json:"cipher,omitempty" default:"-" enum:"aes256gcm|aes128gcm|chacha20poly1305|aes256cbc|aes128cbc" help:"Data ciphers, strongest first"`
	CA             string             `json:"ca,omitempty" help:"The CA (pki ca NAME) that issues and verifies client certificates"`
	TrustedCAs     []string           `json:"trusted-ca,omitempty" help:"Further CAs (pki ca NAME) whose client certificates are accepted"`
	Certificate    string             `json:"certificate,omitempty" help:"The server certificate (pki certificate NAME); when empty, issued by the server's CA"`
	OpenVPN        OpenVPNSettings    `json:"openvpn,omitzero" help:"The OpenVPN protocol"`
	AnyConnect     AnyConnectSettings `json:"anyconnect,omitzero" help:"The AnyConnect protocol"`
	AddressGrace   int                `json:"address-hold,omitempty" range:"0-86400" help:"Seconds a disconnected user's address is kept for them"`
	IdleTimeout    int                `json:"idle-timeout,omitempty" range:"60-604800" help:"Seconds without traffic before a session ends"`
	SessionTimeout int                `json:"session-timeout,omitempty" range:"300-2592000" help:"Maximum session length in seconds"`
	Disable        bool               `json:"disable,omitempty" help:"Keep the server configured but stopped"`
}

// OpenVPNSettings is the OpenVPN side of a server.
type OpenVPNSettings struct {
	TCPPort  int    `json:"tcp-port,omitempty" range:"1-65535" help:"TCP port (shared with AnyConnect)"`
	UDPPort  int    `json:"udp-port,omitempty" range:"1-65535" help:"UDP port"`
	Auth     string `json:"auth,omitempty" enum:"sha1|sha256|sha512" help:"HMAC digest with CBC ciphers (OpenVPN's default is sha1)"`
	TLSCrypt bool   `json:"tls-crypt,omitempty" help:"Wrap the control channel with a tls-crypt key"`
	Disable  bool   `json:"disable,omitempty" help:"Do not accept OpenVPN clients"`
}

// AnyConnectSettings is the AnyConnect side of a server.
type AnyConnectSettings struct {
	Port         int                       `json:"port,omitempty" range:"1-65535" help:"TCP port (shared with OpenVPN) and DTLS UDP port"`
	Password     bool                      `json:"password,omitempty" help:"Ask for the user's password (the default group)"`
	DisableDTLS  bool                      `json:"disable-dtls,omitempty" help:"Carry data over the TLS connection only"`
	Groups       map[string]*GroupSettings `json:"groups,omitempty" key:"name" help:"Connection profiles clients choose from (default: one, from the server's settings)"`
	DefaultGroup string                    `json:"default-group,omitempty" help:"The profile preselected in the client's list"`
	Disable      bool                      `json:"disable,omitempty" help:"Do not accept AnyConnect clients"`
}

// GroupSettings is one AnyConnect connection profile: what a login needs, and what the client gets.
type GroupSettings struct {
	Label           string         `json:"label,omitempty" help:"Shown in the client's list (default: the name)"`
	Pool            netip.Prefix   `json:"pool,omitzero" help:"The profile's own address pool (default: the server's)"`
	LocalNetworks   []netip.Prefix `json:"local-network,omitempty" help:"Networks routed to the client (default: the service's)"`
	RedirectGateway bool           `json:"redirect-gateway,omitempty" help:"Full tunnel for this profile"`
	Certificate     bool           `json:"certificate,omitempty" help:"Require a client certificate"`
	Password        bool           `json:"password,omitempty" help:"Ask for the user's password"`
	OTP             bool           `json:"otp,omitempty" help:"Ask for a TOTP code"`
}

// Flavor is a server's size, as the cloud's API names it.
type Flavor string

// The flavors.
const (
	FlavorSmall Flavor = "small" // 20 sessions (the default)
	FlavorLarge Flavor = "large" // 255 sessions
)

// Sessions is the session limit the flavor stands for.
func (f Flavor) Sessions() int {
	if f == FlavorLarge {
		return 255
	}
	return 20
}

// DefaultUserSessions is how many sessions one user may hold when the server does not say (as ocserv's
// max-same-clients): a laptop and a phone, not a whole team on one account.
const DefaultUserSessions = 2

// Cipher is a data channel cipher as the configuration names it.
type Cipher string

// The data ciphers, strongest first: the default list.
const (
	AES256GCM        Cipher = "aes256gcm"
	AES128GCM        Cipher = "aes128gcm"
	CHACHA20POLY1305 Cipher = "chacha20poly1305"
	AES256CBC        Cipher = "aes256cbc"
	AES128CBC        Cipher = "aes128cbc"
)

// OpenVPN is the cipher's name as OpenVPN spells it ("AES-256-GCM").
func (c Cipher) OpenVPN() string {
	switch c {
	case AES256GCM:
		return "AES-256-GCM"
	case AES128GCM:
		return "AES-128-GCM"
	case CHACHA20POLY1305:
		return "CHACHA20-POLY1305"
	case AES256CBC:
		return "AES-256-CBC"
	case AES128CBC:
		return "AES-128-CBC"
	}
	return ""
}

// FillDefaults sets every field left at its zero value that has a default, in every server. It is the one place
// the defaults are; the appliance's configuration calls it for its effective configuration.
func (s *Settings) FillDefaults() {
	for _, srv := range s.Servers {
		if srv != nil {
			srv.FillDefaults()
		}
	}
}

// FillDefaults sets the server's unset fields that have a default, its protocols' included.
func (s *ServerSettings) FillDefaults() {
	s.Topology = cmp.Or(s.Topology, pool.Subnet)
	s.Flavor = cmp.Or(s.Flavor, FlavorSmall)
	s.MaxSessions = cmp.Or(s.MaxSessions, s.Flavor.Sessions())
	s.MaxPerUser = cmp.Or(s.MaxPerUser, min(DefaultUserSessions, s.MaxSessions))
	if len(s.Ciphers) == 0 {
		s.Ciphers = []Cipher{AES256GCM, AES128GCM, CHACHA20POLY1305, AES256CBC, AES128CBC}
	}
	s.AddressGrace = cmp.Or(s.AddressGrace, 300)
	s.IdleTimeout = cmp.Or(s.IdleTimeout, 1800)
	s.SessionTimeout = cmp.Or(s.SessionTimeout, 86400)
	s.OpenVPN.FillDefaults()
	s.AnyConnect.FillDefaults()
}

// FillDefaults sets the OpenVPN ports (TCP 443, UDP 1194) and digest (sha1) when unset.
func (o *OpenVPNSettings) FillDefaults() {
	o.TCPPort = cmp.Or(o.TCPPort, 443)
	o.UDPPort = cmp.Or(o.UDPPort, 1194)
	o.Auth = cmp.Or(o.Auth, "sha1")
}

// FillDefaults sets the AnyConnect port (443) when unset.
func (a *AnyConnectSettings) FillDefaults() {
	a.Port = cmp.Or(a.Port, 443)
}

// LimitName is how the server's session limit is named to a refused client: its flavor, or its max-sessions when
// that differs. s must have its defaults.
func (s *ServerSettings) LimitName() string {
	if s.MaxSessions != s.Flavor.Sessions() {
		return fmt.Sprintf("max-sessions %d", s.MaxSessions)
	}
	return "flavor " + string(s.Flavor)
}

// ServerConfig returns what the server's settings (with their defaults) decide of its ServerConfig; svc is the
// service it serves (nil when none), listen whether the service's outside address is the box's own to bind. The
// appliance adds what the settings only name: the certificate, the CAs and CRLs, the users and the tls-crypt key.
func (s *ServerSettings) ServerConfig(name string, svc *ServiceSettings, listen bool) *ServerConfig {
	sc := &ServerConfig{
		Name: name, Pool: s.Pool, Topology: s.Topology, AddressHold: time.Duration(s.AddressGrace) * time.Second,
		MaxSessions: s.MaxSessions, MaxSessionsPerUser: s.MaxPerUser, DNS: s.DNS, RedirectGateway: s.RedirectAll, OTP: s.OTP,
		SessionTimeout: time.Duration(s.SessionTimeout) * time.Second,
		IdleTimeout:    time.Duration(s.IdleTimeout) * time.Second,
		LimitName:      s.LimitName(),
	}
	if svc != nil {
		sc.Routes = withDNSRoutes(svc.LocalNetworks, s.DNS)
		if listen {
			sc.ListenAddr = svc.ExternalAddress // a NAT-ed public address is not ours to bind: listen on all then
		}
	} else {
		sc.Routes = withDNSRoutes(nil, s.DNS)
	}
	if !s.OpenVPN.Disable {
		sc.OpenVPN = OpenVPNConfig{Enabled: true, TCPPort: s.OpenVPN.TCPPort, UDPPort: s.OpenVPN.UDPPort,
			Auth: strings.ToUpper(s.OpenVPN.Auth)}
		for _, ci := range s.Ciphers {
			sc.OpenVPN.Ciphers = append(sc.OpenVPN.Ciphers, ci.OpenVPN())
		}
	}
	if !s.AnyConnect.Disable {
		sc.AnyConnect = AnyConnectConfig{Enabled: true, Port: s.AnyConnect.Port, DTLS: !s.AnyConnect.DisableDTLS,
			Password: s.AnyConnect.Password, DefaultGroup: s.AnyConnect.DefaultGroup}
		for _, gname := range slices.Sorted(maps.Keys(s.AnyConnect.Groups)) {
			g := s.AnyConnect.Groups[gname]
			gc := &GroupConfig{Name: gname, Label: g.Label, Pool: g.Pool, Routes: sc.Routes, RedirectGateway: g.RedirectGateway,
				Certificate: g.Certificate, Password: g.Password, OTP: g.OTP}
			if len(g.LocalNetworks) > 0 {
				gc.Routes = withDNSRoutes(g.LocalNetworks, s.DNS)
			}
			sc.Groups = append(sc.Groups, gc)
		}
	}
	return sc
}

// withDNSRoutes adds a host route to each DNS server the networks do not cover.
func withDNSRoutes(nets []netip.Prefix, dns []netip.Addr) []netip.Prefix {
	out := slices.Clone(nets)
	for _, d := range dns {
		covered := false
		for _, r := range out {
			covered = covered || r.Contains(d)
		}
		if !covered {
			out = append(out, netip.PrefixFrom(d, 32))
		}
	}
	return out
}

// Capacity is how many clients a pool holds in a topology: subnet keeps the network, broadcast and server
// addresses; net30 gives each client a /30 and keeps the first /30 for the server.
func Capacity(prefix netip.Prefix, topology pool.Topology) int {
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	if hostBits > 24 {
		hostBits = 24 // a /8 is more than any server holds; avoid overflow on IPv6
	}
	size := 1 << hostBits
	if topology == pool.Net30 {
		return max(size/4-1, 0)
	}
	return max(size-3, 0)
}

// smallestPool returns the prefix length of the smallest pool that holds n clients in a topology.
func smallestPool(n int, topology pool.Topology) int {
	for bits := 30; bits > 8; bits-- {
		if Capacity(netip.PrefixFrom(netip.IPv4Unspecified(), bits), topology) >= n {
			return bits
		}
	}
	return 8
}
