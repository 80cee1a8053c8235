// Package config is the one typed schema of the whole appliance, with its defaults, its validation and its two
// textual forms: JSON (on disk and over the API, keys in a stable order) and VyOS-style `set …` lines (the console
// shell and `show configuration commands`).
//
// The Go structs below are the schema; a component's section is the component's own configuration type (the
// `ipsec` section is ike.Config), tagged the same way, so a thing is described once. Struct tags say how each
// node appears to an admin:
//
//	json:"name"        the node's name in JSON and in set lines (kebab-case, VyOS style)
//	help:"…"           one line of help for the shell
//	default:"…"        the value a zero field takes in the effective config (see WithDefaults); a component's type
//	                   has no such tags but a FillDefaults method, its one set of defaults
//	enum:"a|b"         the only values a string leaf accepts
//	key:"kind"         for a map (a VyOS tag node): what its keys are (name, ifname, network, uuid)
//	range:"lo-hi"      the accepted range of an integer leaf
//
// A map is a tag node (`set system interfaces eth0 …`), a slice of scalars a multi-value leaf
// (`set system dns name-server 192.0.2.53`, once per value), anything else a plain leaf. A leaf whose value
// implements encoding.TextMarshaler is written as that text (a duration in whole seconds, say); its range applies
// to the number the text is. A leaf of a secret type (Secret, or a component's own such as ike.PSK: a string type
// that prints as Placeholder) is a secret: shown as **** unless an admin asks, sealed at rest. A Config as stored holds only
// what the admin set; components and validation work on the effective config, which has the defaults filled in.
//
// A *Config is not safe for concurrent mutation; the store hands out clones.
package config

import (
	"net/netip"

	"toride/ike"
)

// Config is the whole configuration of one appliance.
type Config struct {
	System System           `json:"system,omitzero" help:"Host name, interfaces, routes, DNS and time"`
	IPsec  ike.Config       `json:"ipsec,omitzero" help:"Site-to-site IPsec connections (two tunnels each, AWS style)"`
	SSLVPN SSLVPN           `json:"sslvpn,omitzero" help:"SSL-VPN services and servers (OpenVPN and AnyConnect)"`
	Users  map[string]*User `json:"users,omitempty" key:"name" help:"Local users of the SSL-VPN"`
	PKI    PKI              `json:"pki,omitzero" help:"Certificate authorities, certificates and revocation lists"`
	API    API              `json:"api,omitzero" help:"The management API (HTTPS listener and its keys)"`
}

// System holds what makes the box a host on its networks.
type System struct {
	HostName     string                  `json:"host-name,omitempty" default:"toride" help:"Host name (RFC 1123)"`
	DomainName   string                  `json:"domain-name,omitempty" help:"DNS domain of the appliance"`
	Interfaces   map[string]*Interface   `json:"interfaces,omitempty" key:"ifname" help:"Network interfaces"`
	StaticRoutes map[string]*StaticRoute `json:"static-routes,omitempty" key:"network" help:"Static IPv4 routes"`
	DNS          DNS                     `json:"dns,omitzero" help:"Name servers the appliance uses"`
	NTP          NTP                     `json:"ntp,omitzero" help:"Time servers"`
}

// Interface is one network interface.
type Interface struct {
	Description string         `json:"description,omitempty" help:"Free text"`
	Addresses   []netip.Prefix `json:"address,omitempty" help:"Address with prefix length, e.g. 192.0.2.1/24"`
	MTU         int            `json:"mtu,omitempty" default:"1500" range:"576-9000" help:"Maximum transmission unit"`
	Disable     bool           `json:"disable,omitempty" help:"Keep the interface administratively down"`
}

// StaticRoute is one static route; its key is the destination network ("0.0.0.0/0" for the default route).
type StaticRoute struct {
	NextHop  netip.Addr `json:"next-hop,omitzero" help:"Gateway address, inside one of the interfaces' networks"`
	Distance int        `json:"distance,omitempty" default:"1" range:"1-255" help:"Administrative distance (route metric)"`
}

// DNS is the resolver configuration.
type DNS struct {
	NameServers   []netip.Addr `json:"name-server,omitempty" help:"Name server address"`
	SearchDomains []string     `json:"search-domain,omitempty" help:"Domain appended to short names"`
}

// NTP is the time configuration.
type NTP struct {
	Servers []string `json:"server,omitempty" help:"NTP server, by name or address"`
}

// SSLVPN holds the SSL-VPN side: services (the local side an SSL-VPN serves) and servers (the concentrators).
type SSLVPN struct {
	Services map[string]*VPNService   `json:"services,omitempty" key:"name" help:"A local site served by SSL-VPN: its networks and outside address"`
	Servers  map[string]*SSLVPNServer `json:"servers,omitempty" key:"name" help:"An SSL-VPN concentrator"`
}

// VPNService is the local side an SSL-VPN server serves.
type VPNService struct {
	ID              string         `json:"id,omitempty" help:"Identifier used by the REST API"`
	LocalNetworks   []netip.Prefix `json:"local-network,omitempty" help:"Network pushed to clients as a route"`
	ExternalAddress netip.Addr     `json:"external-address,omitzero" help:"Outside address clients connect to"`
}

// SSLVPNServer is one SSL-VPN concentrator: one TUN device, one address pool, OpenVPN and AnyConnect listeners.
type SSLVPNServer struct {
	ID             string          `json:"id,omitempty" help:"Identifier used by the REST API"`
	Description    string          `json:"description,omitempty" help:"Free text"`
	Service        string          `json:"service,omitempty" help:"The VPN service (sslvpn service NAME) this server serves"`
	Pool           netip.Prefix    `json:"pool,omitzero" help:"Client address pool, e.g. 10.8.0.0/24"`
	Topology       string          `json:"topology,omitempty" default:"subnet" enum:"subnet|net30" help:"subnet: one address per client; net30: a /30 per client"`
	Flavor         string          `json:"flavor,omitempty" default:"small" enum:"small|large" help:"small: 20 sessions, large: 255"`
	MaxSessions    int             `json:"max-sessions,omitempty" range:"1-65535" help:"Concurrent session limit (overrides the flavor)"`
	MaxPerUser     int             `json:"max-sessions-per-user,omitempty" range:"1-65535" help:"Sessions one user may hold at once, all protocols together (default 2, or max-sessions when lower)"`
	RedirectAll    bool            `json:"redirect-gateway,omitempty" help:"Full tunnel: send all client traffic through the VPN"`
	DNS            []netip.Addr    `json:"dns,omitempty" help:"DNS server pushed to clients (a route to it is pushed too)"`
	OTP            bool            `json:"otp,omitempty" help:"Require a TOTP code as a second factor"`
	Ciphers        []string        `json:"cipher,omitempty" enum:"aes256gcm|aes128gcm|chacha20poly1305|aes256cbc|aes128cbc" help:"Data ciphers, strongest first"`
	CA             string          `json:"ca,omitempty" help:"The CA (pki ca NAME) that issues and verifies client certificates"`
	TrustedCAs     []string        `json:"trusted-ca,omitempty" help:"Further CAs (pki ca NAME) whose client certificates are accepted"`
	Certificate    string          `json:"certificate,omitempty" help:"The server certificate (pki certificate NAME); when empty, issued by the server's CA"`
	OpenVPN        OpenVPNListener `json:"openvpn,omitzero" help:"The OpenVPN protocol"`
	AnyConnect     AnyConnect      `json:"anyconnect,omitzero" help:"The AnyConnect protocol"`
	AddressGrace   int             `json:"address-hold,omitempty" default:"300" range:"0-86400" help:"Seconds a disconnected user's address is kept for them"`
	IdleTimeout    int             `json:"idle-timeout,omitempty" default:"1800" range:"60-604800" help:"Seconds without traffic before a session ends"`
	SessionTimeout int             `json:"session-timeout,omitempty" default:"86400" range:"300-2592000" help:"Maximum session length in seconds"`
	Disable        bool            `json:"disable,omitempty" help:"Keep the server configured but stopped"`
}

// OpenVPNListener is the OpenVPN side of a server.
type OpenVPNListener struct {
	TCPPort  int    `json:"tcp-port,omitempty" default:"443" range:"1-65535" help:"TCP port (shared with AnyConnect)"`
	UDPPort  int    `json:"udp-port,omitempty" default:"1194" range:"1-65535" help:"UDP port"`
	Auth     string `json:"auth,omitempty" default:"sha1" enum:"sha1|sha256|sha512" help:"HMAC digest with CBC ciphers (OpenVPN's default is sha1)"`
	TLSCrypt bool   `json:"tls-crypt,omitempty" help:"Wrap the control channel with a tls-crypt key"`
	Disable  bool   `json:"disable,omitempty" help:"Do not accept OpenVPN clients"`
}

// AnyConnect is the AnyConnect side of a server.
type AnyConnect struct {
	Port         int                         `json:"port,omitempty" default:"443" range:"1-65535" help:"TCP port (shared with OpenVPN) and DTLS UDP port"`
	Password     bool                        `json:"password,omitempty" help:"Ask for the user's password (the default group)"`
	DisableDTLS  bool                        `json:"disable-dtls,omitempty" help:"Carry data over the TLS connection only"`
	Groups       map[string]*AnyConnectGroup `json:"groups,omitempty" key:"name" help:"Connection profiles clients choose from (default: one, from the server's settings)"`
	DefaultGroup string                      `json:"default-group,omitempty" help:"The profile preselected in the client's list"`
	Disable      bool                        `json:"disable,omitempty" help:"Do not accept AnyConnect clients"`
}

// AnyConnectGroup is one connection profile: what a login needs, and what the client gets.
type AnyConnectGroup struct {
	Label           string         `json:"label,omitempty" help:"Shown in the client's list (default: the name)"`
	Pool            netip.Prefix   `json:"pool,omitzero" help:"The profile's own address pool (default: the server's)"`
	LocalNetworks   []netip.Prefix `json:"local-network,omitempty" help:"Networks routed to the client (default: the service's)"`
	RedirectGateway bool           `json:"redirect-gateway,omitempty" help:"Full tunnel for this profile"`
	Certificate     bool           `json:"certificate,omitempty" help:"Require a client certificate"`
	Password        bool           `json:"password,omitempty" help:"Ask for the user's password"`
	OTP             bool           `json:"otp,omitempty" help:"Ask for a TOTP code"`
}

// User is a local user.
type User struct {
	FullName     string `json:"full-name,omitempty" help:"Display name"`
	PasswordHash Secret `json:"password-hash,omitempty" help:"bcrypt hash of the password"`
	OTPKey       Secret `json:"otp-key,omitempty" help:"The user's TOTP key in base32 (issued through the API, which shows it once)"`
	Disable      bool   `json:"disable,omitempty" help:"Refuse this user's logins"`
}

// PKI holds certificates and keys in PEM.
type PKI struct {
	CAs          map[string]*CA          `json:"ca,omitempty" key:"name" help:"Certificate authorities"`
	Certificates map[string]*Certificate `json:"certificates,omitempty" key:"name" help:"Certificates with their keys"`
}

// CA is a certificate authority: its certificate, its key when the appliance issues with it, and its CRL.
type CA struct {
	Certificate string `json:"certificate,omitempty" help:"PEM certificate"`
	PrivateKey  Secret `json:"private-key,omitempty" help:"PEM private key (only for a CA this appliance issues with)"`
	CRL         string `json:"crl,omitempty" help:"PEM certificate revocation list"`
}

// Certificate is an end-entity certificate with its private key.
type Certificate struct {
	Certificate string `json:"certificate,omitempty" help:"PEM certificate"`
	PrivateKey  Secret `json:"private-key,omitempty" help:"PEM private key"`
}

// API is the network side of the management API; the unix socket is always on.
type API struct {
	HTTPS APIHTTPS           `json:"https,omitzero" help:"REST over HTTPS for remote management"`
	Keys  map[string]*APIKey `json:"keys,omitempty" key:"name" help:"API keys accepted on HTTPS"`
}

// APIHTTPS is the HTTPS listener of the API.
type APIHTTPS struct {
	ListenAddress netip.Addr `json:"listen-address,omitzero" help:"Address to listen on (management network only)"`
	Port          int        `json:"port,omitempty" default:"8443" range:"1-65535" help:"TCP port"`
	Certificate   string     `json:"certificate,omitempty" help:"Server certificate (pki certificate NAME); self-signed when empty"`
}

// APIKey is one API key, stored as the SHA-256 of the key.
type APIKey struct {
	KeyHash Secret `json:"key-sha256,omitempty" help:"Hex SHA-256 of the key presented as 'Authorization: Bearer KEY'"`
}
