// Package config is the one typed schema of the whole appliance, with its defaults, its validation and its two
// textual forms: JSON (on disk and over the API, keys in a stable order) and VyOS-style `set …` lines (the console
// shell and `show configuration commands`).
//
// The Go structs below are the schema; a component's section is the component's own configuration type (the
// `ipsec` section is ike.Config, the `sslvpn` one sslvpn.Settings), tagged the same way, so a thing is described once. Struct tags say how each
// node appears to an admin:
//
//	json:"name"        the node's name in JSON and in set lines (kebab-case, VyOS style)
//	help:"…"           one line of help for the shell
//	default:"…"        the value a zero field takes in the effective config (see WithDefaults); a component's type
//	                   has no such tags but a FillDefaults method, its one set of defaults; default:"-" marks a
//	                   field whose default depends on other fields, so none is shown
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
	"toride/sslvpn"
)

// Config is the whole configuration of one appliance.
type Config struct {
	System System           `json:"system,omitzero" help:"Host name, interfaces, routes, DNS and time"`
	IPsec  ike.Config       `json:"ipsec,omitzero" help:"Site-to-site IPsec connections (two tunnels each, AWS style)"`
	SSLVPN sslvpn.Settings  `json:"sslvpn,omitzero" help:"SSL-VPN services and servers (OpenVPN and AnyConnect)"`
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
	DHCP        bool           `json:"dhcp,omitempty" help:"Take an address, a default route and name servers from a DHCP server"`
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
	Role    string `json:"role,omitempty" default:"admin" enum:"admin|read-only" help:"admin: any request; read-only: reads without secrets"`
}
