// Package sslvpn is the SSL-VPN concentrator: every configured server, each with its TUN device, address pool,
// trust store (CAs and live CRLs), session limit and protocol engines behind shared listeners.
//
//	client ──TCP 443──► demux ──► openvpn engine ─┐                      ┌─► datapath ──► TUN ──► LAN
//	client ──UDP 1194─────────► openvpn engine ───┼─► Server.admit ──────┤
//	                    (AnyConnect joins here)   ┘  user, OTP, limit,   └─ the session's uplink
//	                                                 pool, route
//
// Sessions of every protocol of a server count against one limit, and a user's against a limit per user; they
// draw from one pool. A login is refused with a message the client logs (limit reached, pool exhausted, identity
// mismatch), and every refusal is counted by reason and logged. A failed login (a wrong password or OTP, an
// unknown or disabled user, a lockout) tells the client one and the same thing, userauth.ErrLoginFailed, so the
// answer shows no one which user names exist: the reason is in the count and the log only.
//
// An AnyConnect login and its tunnel are two steps: at every CONNECT with the login's cookie, the first and every
// reconnect, the user is checked again (not disabled, not deleted since), and a commit that disables or deletes
// a user invalidates their cookies and cuts their sessions.
//
// A server does not make its TUN device itself: Options.TUN does (dataplane/tun.Kernel on the appliance, in-memory
// tuntest devices in tests), and Options.Links addresses it, one address in each of the server's pools.
//
// Locking: the Concentrator's mu guards its server map and is held across Set; each Server's mu guards its
// session table and is held briefly. A Concentrator is safe for concurrent use.
package sslvpn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"toride/dataplane/tun"
	"toride/sslvpn/anyconnect"
	"toride/sslvpn/datapath"
	"toride/sslvpn/demux"
	"toride/sslvpn/openvpn"
	"toride/sslvpn/pool"
	"toride/sslvpn/trust"
	"toride/sslvpn/userauth"
)

// ErrNoSuchSession is a session id that is not connected.
var ErrNoSuchSession = errors.New("sslvpn: no such session")

// TUNMaker makes the servers' TUN devices: dataplane/tun.Kernel, or a test's tuntest.Devices.
type TUNMaker interface {
	Create(name string, mtu int) (tun.Device, error)
}

// Addresser sets the TUN devices' addresses (dataplane/link).
type Addresser interface {
	AddAddress(name string, p netip.Prefix) error
	SetUp(name string, up bool) error
}

// Options are what the concentrator needs from the appliance.
type Options struct {
	TUN    TUNMaker // required
	Links  Addresser
	Logger *slog.Logger
	Auth   userauth.Options
}

// Config is the desired state: every server.
type Config struct {
	Servers []*ServerConfig
}

// ServerConfig is one server.
type ServerConfig struct {
	Name       string
	ListenAddr netip.Addr // the outside address clients connect to; unspecified: every address
	Pool       netip.Prefix
	Topology   pool.Topology
	// AddressHold is how long a disconnected user's address is kept for them.
	AddressHold time.Duration
	MaxSessions int
	LimitName   string // how the limit is named to a refused client, e.g. "flavor small"
	// MaxSessionsPerUser is how many sessions one user may hold at once, all protocols together (0: no limit). An
	// AnyConnect client that reconnects with its cookie is the same session.
	MaxSessionsPerUser int
	// SessionTimeout ends a session after this long, whatever it does (0: never); the client reconnects.
	SessionTimeout time.Duration
	// IdleTimeout ends a session that carried no tunnel traffic in either direction for this long (0: never).
	// Keepalives (OpenVPN pings, AnyConnect DPD) do not count as traffic.
	IdleTimeout time.Duration

	Routes          []netip.Prefix // pushed: the local networks and the DNS servers
	DNS             []netip.Addr
	RedirectGateway bool

	Certificate tls.Certificate // the server's
	CAs         []*x509.Certificate
	CRLs        []*x509.RevocationList

	OTP   bool
	Users map[string]User

	// Groups are the connection profiles AnyConnect clients choose from; none means one, "default", made from
	// the server's settings. OpenVPN clients always use the server's settings.
	Groups []*GroupConfig

	OpenVPN    OpenVPNConfig
	AnyConnect AnyConnectConfig
}

// AnyConnectConfig is the AnyConnect side of a server.
type AnyConnectConfig struct {
	Enabled      bool
	Port         int  // TCP port (shared with OpenVPN's when equal) and the DTLS UDP port
	DTLS         bool // offer DTLS
	Password     bool // the default group asks for the user's password
	DefaultGroup string
}

// GroupConfig is a connection profile: what a login needs, and what the client gets.
type GroupConfig struct {
	Name, Label     string
	Pool            netip.Prefix // zero: the server's pool
	Routes          []netip.Prefix
	RedirectGateway bool
	Certificate     bool // a client certificate is required
	Password        bool
	OTP             bool
}

// defaultGroup names the one AnyConnect profile of a server that configures none.
const defaultGroup = "default"

// listenAddress is where a listener on port binds: the server's outside address, or every address of the box
// when it has none of its own (a NAT-ed public address, or no VPN service at all).
func (c *ServerConfig) listenAddress(port int) string {
	if !c.ListenAddr.IsValid() || c.ListenAddr.IsUnspecified() {
		return net.JoinHostPort("", strconv.Itoa(port))
	}
	return netip.AddrPortFrom(c.ListenAddr, uint16(port)).String()
}

// group returns the named group. "" is OpenVPN's: the server's own settings, a certificate always, no password.
// A server without groups offers AnyConnect one, defaultGroup, made of the same settings and the AnyConnect
// password setting.
func (c *ServerConfig) group(name string) *GroupConfig {
	for _, g := range c.Groups {
		if g.Name == name {
			return g
		}
	}
	base := &GroupConfig{Name: defaultGroup, Pool: c.Pool, Routes: c.Routes, RedirectGateway: c.RedirectGateway, Certificate: true, OTP: c.OTP}
	switch {
	case name == "":
		return base
	case name == defaultGroup && len(c.Groups) == 0:
		base.Password = c.AnyConnect.Password
		return base
	}
	return nil
}

// poolPrefixes lists the server's pool first, then the groups' own.
func (c *ServerConfig) poolPrefixes() []netip.Prefix {
	out := []netip.Prefix{c.Pool}
	for _, g := range c.Groups {
		if g.Pool.IsValid() && !slices.Contains(out, g.Pool) {
			out = append(out, g.Pool)
		}
	}
	return out
}

// OpenVPNConfig is the OpenVPN side of a server.
type OpenVPNConfig struct {
	Enabled          bool
	TCPPort, UDPPort int // 0: not on that transport
	Ciphers          []string
	Auth             string
	TLSCrypt         []byte
	RenegotiateAfter time.Duration
	Keepalive        time.Duration
	KeepaliveTimeout time.Duration
}

// User is what a server knows of a local user.
type User struct {
	OTPSecret    []byte
	PasswordHash string
	Disabled     bool
}

// restartKey is the part of a server's configuration that only a restart can change.
type restartKey struct {
	ListenAddr  netip.Addr
	Pools       string
	Pool        netip.Prefix
	Topology    pool.Topology
	AddressHold time.Duration
	Cert        [][]byte
	OpenVPN     OpenVPNConfig
	AnyConnect  AnyConnectConfig
	IdleTimeout time.Duration // the AnyConnect engine announces it to its clients in the tunnel's headers
	Groups      string
}

func keyOf(c *ServerConfig) restartKey {
	var groups []string
	for _, g := range c.Groups {
		groups = append(groups, fmt.Sprintf("%s|%s|%v|%v|%v", g.Name, g.Label, g.Certificate, g.Password, g.OTP))
	}
	return restartKey{c.ListenAddr, fmt.Sprint(c.poolPrefixes()), c.Pool, c.Topology, c.AddressHold, c.Certificate.Certificate, c.OpenVPN,
		c.AnyConnect, c.IdleTimeout, strings.Join(groups, ";")}
}

// Concentrator runs the servers.
type Concentrator struct {
	opts Options
	auth *userauth.Checker

	mu      sync.Mutex
	servers map[string]*Server
	closed  bool
}

// New returns a concentrator with no server. It panics without opts.TUN: a wiring bug.
func New(opts Options) *Concentrator {
	if opts.TUN == nil {
		panic("sslvpn: New without a TUN maker")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Concentrator{opts: opts, auth: userauth.New(opts.Auth), servers: map[string]*Server{}}
}

// Auth is the login checker shared by every server and protocol: its lockouts and replay state are appliance-wide.
func (c *Concentrator) Auth() *userauth.Checker { return c.auth }

// Set makes the running servers match cfg: servers gone are stopped, new ones started, changed ones updated in
// place or, when their listeners, pool, certificate or ciphers changed, restarted. Calling Set twice with the same
// configuration does nothing the second time. On an error some servers may be in the new state: the caller
// returns to the old one by calling Set with it.
func (c *Concentrator) Set(ctx context.Context, cfg Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("sslvpn: concentrator closed")
	}
	want := map[string]*ServerConfig{}
	for _, sc := range cfg.Servers {
		want[sc.Name] = sc
	}
	for name, s := range c.servers {
		if sc, ok := want[name]; !ok || !reflect.DeepEqual(keyOf(sc), keyOf(s.cfg.Load())) {
			s.stop()
			delete(c.servers, name)
		}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		sc := want[name]
		if s, ok := c.servers[name]; ok {
			if err := s.update(sc); err != nil {
				errs = append(errs, fmt.Errorf("server %s: %w", name, err))
			}
			continue
		}
		s, err := startServer(sc, c.tunName(name), &c.opts, c.auth)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.servers[name] = s
	}
	return errors.Join(errs...)
}

// tunName names a server's TUN device: "vpn-" and the server's name, within the kernel's 15 characters and
// unique among the running servers.
func (c *Concentrator) tunName(server string) string {
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, server)
	name := "vpn-" + base
	if len(name) > 15 {
		name = name[:15]
	}
	taken := func(n string) bool {
		for _, s := range c.servers {
			if s.tun == n {
				return true
			}
		}
		return false
	}
	for i := 2; taken(name); i++ {
		suffix := fmt.Sprint(i)
		name = name[:min(len(name), 15-len(suffix))] + suffix
	}
	return name
}

// ServerStatus is one server's state.
type ServerStatus struct {
	Name         string            `json:"name"`
	TUN          string            `json:"tun"`
	Pool         string            `json:"pool"`
	PoolInUse    int               `json:"pool_in_use"`
	PoolCapacity int               `json:"pool_capacity"`
	Sessions     int               `json:"sessions"`
	MaxSessions  int               `json:"max_sessions"`
	Refused      map[string]uint64 `json:"refused"`
	// FailedHandshakes counts the clients that failed before they logged in, by protocol: "openvpn-tcp",
	// "openvpn-udp", "anyconnect".
	FailedHandshakes map[string]uint64 `json:"failed_handshakes"`
	// TCP is the TCP listeners' demultiplexer: connections awaiting login, and those it shed.
	TCP        *demux.Stats            `json:"tcp,omitempty"`
	Datapath   datapath.Stats          `json:"datapath"`
	OpenVPN    *openvpn.ServerStats    `json:"openvpn,omitempty"`
	AnyConnect *anyconnect.ServerStats `json:"anyconnect,omitempty"`
	CRLs       []trust.CRLInfo         `json:"crls"`
}

// SessionInfo describes one session.
type SessionInfo struct {
	ID         string    `json:"id"`
	Server     string    `json:"server"`
	Protocol   string    `json:"protocol"`
	Group      string    `json:"group"`
	User       string    `json:"user"`
	Remote     string    `json:"remote"`
	Address    string    `json:"address"`
	Cipher     string    `json:"cipher,omitempty"`
	DTLS       bool      `json:"dtls,omitempty"`
	CertSerial string    `json:"certificate_serial,omitempty"`
	Since      time.Time `json:"since"`
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
	// Forbidden counts the session's packets to destinations it was not given, which were dropped.
	Forbidden uint64 `json:"forbidden"`
}

// Status returns every server's state, by name.
func (c *Concentrator) Status() []ServerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ServerStatus
	for _, name := range slices.Sorted(maps.Keys(c.servers)) {
		s := c.servers[name]
		cfg := s.cfg.Load()
		s.mu.Lock()
		inUse, capacity := 0, 0
		for _, p := range s.pools {
			inUse, capacity = inUse+p.InUse(), capacity+p.Capacity()
		}
		st := ServerStatus{Name: name, TUN: s.tun, Pool: cfg.Pool.String(), PoolInUse: inUse, PoolCapacity: capacity,
			Sessions: len(s.sessions), MaxSessions: cfg.MaxSessions, Refused: maps.Clone(s.refused), Datapath: s.dp.Stats(), CRLs: s.trust.CRLs(),
			FailedHandshakes: maps.Clone(s.failed)}
		s.mu.Unlock()
		if st.FailedHandshakes == nil {
			st.FailedHandshakes = map[string]uint64{}
		}
		if s.demux != nil {
			ds := s.demux.Stats()
			st.TCP = &ds
		}
		if s.ovpn != nil {
			os := s.ovpn.Stats()
			st.OpenVPN = &os
		}
		if s.ac != nil {
			as := s.ac.Stats()
			st.AnyConnect = &as
		}
		out = append(out, st)
	}
	return out
}

// Sessions lists the sessions of one server ("" for every server).
func (c *Concentrator) Sessions(server string) []SessionInfo {
	c.mu.Lock()
	servers := map[string]*Server{}
	for n, s := range c.servers {
		if server == "" || n == server {
			servers[n] = s
		}
	}
	c.mu.Unlock()
	var out []SessionInfo
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		for _, sess := range servers[name].Sessions() {
			info := SessionInfo{ID: sess.ID, Server: name, Protocol: sess.Protocol, Group: sess.Group, User: sess.User, Remote: sess.Remote.String(),
				Address: sess.Lease.Addr.String(), Cipher: sess.Cipher, Since: sess.Started, Forbidden: sess.uplink.Forbidden()}
			if sess.Cert != nil {
				info.CertSerial = fmt.Sprintf("%X", sess.Cert.SerialNumber)
			}
			if sess.stats != nil {
				info.BytesIn, info.BytesOut = sess.stats()
			}
			if sess.dtls != nil {
				info.DTLS = sess.dtls()
			}
			out = append(out, info)
		}
	}
	return out
}

// Disconnect cuts one session of a server, telling the client reason.
func (c *Concentrator) Disconnect(server, id, reason string) error {
	c.mu.Lock()
	s := c.servers[server]
	c.mu.Unlock()
	if s == nil || !s.disconnect(id, reason) {
		return fmt.Errorf("%w: %s on server %s", ErrNoSuchSession, id, server)
	}
	return nil
}

// DisconnectUser cuts every session of a user on a server (a revoked certificate, a deleted user).
func (c *Concentrator) DisconnectUser(server, user, reason string) int {
	c.mu.Lock()
	s := c.servers[server]
	c.mu.Unlock()
	if s == nil {
		return 0
	}
	n := 0
	for _, sess := range s.Sessions() {
		if sess.User == user {
			sess.peer.Close(reason)
			n++
		}
	}
	return n
}

// Close stops every server. It is idempotent.
func (c *Concentrator) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for name, s := range c.servers {
		s.stop()
		delete(c.servers, name)
	}
}
