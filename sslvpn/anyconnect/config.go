package anyconnect

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Config configures a Server. Zero durations and sizes take the documented defaults.
type Config struct {
	// TLS is the server's TLS configuration: certificate, minimum version, client-certificate policy
	// (tls.VerifyClientCertIfGiven when some groups log in without a certificate, RequireAndVerifyClientCert
	// when all need one) and ClientCAs, whose names go into the certificate request. Required. The engine
	// works on a clone, with dynamic record sizing disabled: openconnect takes one TLS record per CSTP frame.
	TLS *tls.Config
	// Groups are the connection profiles. At least one; names unique.
	Groups []Group
	// DefaultGroup is the Name of the group preselected in the list ("" for the first).
	DefaultGroup string
	// ServerName is announced as X-CSTP-Server-Name and used as the login form's title ("Toride" if empty).
	ServerName string
	// LoginBanner, if set, is shown above the login form.
	LoginBanner string

	// DTLS offers DTLS 1.2 with PSK-NEGOTIATE to clients that ask for it; the caller then serves the UDP
	// socket with ServeDTLS.
	DTLS bool
	// DTLSPort is announced as X-DTLS-Port; 0 announces the port of the TCP connection (same port number).
	DTLSPort int

	// MTU caps the tunnel MTU offered (X-CSTP-MTU). The engine otherwise derives it from the client's
	// X-CSTP-Base-MTU (default 1500) minus IPv4, UDP and DTLS overhead: 1434 for a 1500-byte link.
	MTU int
	// DPD is the dead-peer detection interval announced to the client (X-CSTP-DPD, X-DTLS-DPD; default 30 s).
	// The server probes an idle client at this interval, declares its TLS connection dead after three silent
	// intervals (the session then waits for a reconnect), and stops sending over DTLS after two.
	DPD time.Duration
	// Keepalive is the keepalive interval announced to the client (default 20 s).
	Keepalive time.Duration
	// IdleTimeout ends a session without data in either direction for this long (0: never).
	IdleTimeout time.Duration
	// SessionTimeout ends a session this long after its first CONNECT, reconnects included (0: never).
	SessionTimeout time.Duration
	// CookieLifetime is how long a login's cookie waits for its first CONNECT, and how long a session that lost
	// its connection waits for the client to reconnect with it (X-CSTP-Disconnected-Timeout; default 5 min).
	CookieLifetime time.Duration
	// AuthTimeout is how long a started login (group chosen, form shown) waits for its next step (default
	// 3 min: a user reads a one-time password from a phone).
	AuthTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake, each HTTP request after the previous one, Backend calls and a
	// DTLS handshake (default 10 s). An idle HTTP connection between requests is closed after 6 times this.
	HandshakeTimeout time.Duration

	// QueueLen is each session's queue of packets towards the client (default 512).
	QueueLen int
	// MaxBuffers bounds the packet buffers of the whole server (default 32768, 64 MiB).
	MaxBuffers int
	// MaxPendingLogins bounds the logins waiting for the answer to their challenge (default 4096), and four
	// times it the cookies waiting for their first CONNECT. A login's first form keeps nothing; past a bound
	// the oldest gives way, the newest is never refused (per connection 4 logins, per source 64 logins and 64
	// cookies, an IPv6 source being its /64).
	MaxPendingLogins int
	// MaxDTLSHandshakes bounds concurrent DTLS handshakes (default 128).
	MaxDTLSHandshakes int

	// Now, if set, replaces time.Now (tests).
	Now func() time.Time
}

// Group is one connection profile (Cisco's tunnel group): how its users log in and the client profile they
// download.
type Group struct {
	// Name identifies the group in the protocol (group-select) and in AuthRequest.Group: letters, digits,
	// '.', '_' and '-'.
	Name string
	// Label is shown in the client's list; openconnect's --authgroup matches it (default Name).
	Label string
	// The factors a login needs, in any combination but none: a client certificate verified by the TLS
	// handshake, a password (with a user name), a one-time password (asked in a second form). A group with
	// neither Certificate nor Password asks for a user name with the one-time password.
	Certificate, Password, OTP bool
	// ProfileXML, if set, is the AnyConnect client profile served at /profiles/<Name>.xml and announced with
	// its SHA-1 on login.
	ProfileXML []byte
}

var groupName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// group is a validated Group with what the engine derives from it.
type group struct {
	Group
	index       int // in the server's list
	profileURI  string
	profileSHA1 string
}

// asksUser reports whether the group's first form asks for a user name.
func (g *group) asksUser() bool { return g.Password || !g.Certificate }

func (c *Config) withDefaults() (Config, []*group, error) {
	cfg := *c
	if cfg.TLS == nil {
		return cfg, nil, fmt.Errorf("%w: no TLS configuration", ErrConfig)
	}
	if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil {
		return cfg, nil, fmt.Errorf("%w: the TLS configuration has no certificate", ErrConfig)
	}
	if len(cfg.Groups) == 0 {
		return cfg, nil, fmt.Errorf("%w: no connection profile (group)", ErrConfig)
	}
	var groups []*group
	seen := map[string]bool{}
	for _, g := range cfg.Groups {
		if !groupName.MatchString(g.Name) {
			return cfg, nil, fmt.Errorf("%w: group name %q: use 1 to 64 letters, digits, '.', '_' or '-'", ErrConfig, g.Name)
		}
		if seen[strings.ToLower(g.Name)] {
			return cfg, nil, fmt.Errorf("%w: group %q appears twice", ErrConfig, g.Name)
		}
		seen[strings.ToLower(g.Name)] = true
		if !g.Certificate && !g.Password && !g.OTP {
			return cfg, nil, fmt.Errorf("%w: group %q needs at least one of certificate, password, OTP", ErrConfig, g.Name)
		}
		if g.Label == "" {
			g.Label = g.Name
		}
		gg := &group{Group: g, index: len(groups)}
		if len(g.ProfileXML) > 0 {
			sum := sha1.Sum(g.ProfileXML)
			gg.profileURI = "/profiles/" + g.Name + ".xml"
			gg.profileSHA1 = hex.EncodeToString(sum[:])
		}
		groups = append(groups, gg)
	}
	if cfg.DefaultGroup != "" && !seen[strings.ToLower(cfg.DefaultGroup)] {
		return cfg, nil, fmt.Errorf("%w: default group %q is not configured", ErrConfig, cfg.DefaultGroup)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "Toride"
	}
	if cfg.DTLSPort < 0 || cfg.DTLSPort > 65535 {
		return cfg, nil, fmt.Errorf("%w: DTLS port %d", ErrConfig, cfg.DTLSPort)
	}
	if cfg.MTU != 0 && (cfg.MTU < 576 || cfg.MTU > 1500) {
		return cfg, nil, fmt.Errorf("%w: MTU %d: use 576 to 1500", ErrConfig, cfg.MTU)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DPD, 30*time.Second)
	def(&cfg.Keepalive, 20*time.Second)
	def(&cfg.CookieLifetime, 5*time.Minute)
	def(&cfg.AuthTimeout, 3*time.Minute)
	def(&cfg.HandshakeTimeout, 10*time.Second)
	if cfg.DPD < time.Second || cfg.Keepalive < time.Second {
		return cfg, nil, fmt.Errorf("%w: DPD and keepalive intervals are whole seconds, at least 1 s", ErrConfig)
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&cfg.QueueLen, 512)
	defInt(&cfg.MaxBuffers, 32768)
	defInt(&cfg.MaxPendingLogins, 4096)
	defInt(&cfg.MaxDTLSHandshakes, 128)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, groups, nil
}

// seconds formats a duration for an X-CSTP header: whole seconds, at least 1.
func seconds(d time.Duration) string {
	s := int64(d / time.Second)
	if s < 1 {
		s = 1
	}
	return fmt.Sprint(s)
}
