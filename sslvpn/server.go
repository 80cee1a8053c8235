package sslvpn

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/datapath"
	"toride/sslvpn/demux"
	"toride/sslvpn/openvpn"
	"toride/sslvpn/pool"
	"toride/sslvpn/trust"
	"toride/sslvpn/userauth"
)

// Refusal reasons, as counted in ServerStatus.Refused. The client of a failed login (password, otp,
// user_disabled, locked_out, auth_busy) is told userauth.ErrLoginFailed whatever the reason: only the count and
// the log say which.
const (
	RefusedLimit     = "session_limit"
	RefusedUserLimit = "user_session_limit"
	RefusedPool      = "pool_exhausted"
	RefusedOTP       = "otp"
	RefusedIdentity  = "identity"
	RefusedDisabled  = "user_disabled"
	RefusedRevoked   = "certificate_revoked"
	RefusedPassword  = "password"
	RefusedLocked    = "locked_out" // a lockout, a blocked source or a slowed-down user: refused unchecked
	RefusedBusy      = "auth_busy"  // no password check could start in time
)

// Reasons the core refuses a login, for the logs (the client is told userauth.ErrLoginFailed).
var (
	errNoSuchUser   = errors.New("no such user")
	errUserDisabled = errors.New("the user is disabled")
)

// Peer is a protocol session as the core sees it.
type Peer interface {
	SendPacket(pkt []byte) bool // queue a packet for the client; copies; never blocks
	Close(reason string)        // cut the session, telling the client why; idempotent, never blocks
}

// Session is one connected client of a server, whatever its protocol.
type Session struct {
	ID       string
	Protocol string // "openvpn-tcp", "openvpn-udp", "anyconnect"
	Group    string // the connection profile
	User     string
	Cert     *x509.Certificate     // the verified client certificate, nil for a password-only login
	Chains   [][]*x509.Certificate // Cert's verified chains, leaf first: a new CRL may revoke a CA in them
	Remote   netip.AddrPort
	Lease    pool.Lease
	Cipher   string
	Started  time.Time

	known   bool   // the user was in the configuration at login: deleting them ends the session
	profile string // the connection profile asked for at login ("" for OpenVPN's): where a new configuration looks
	peer    Peer
	pool    *pool.Pool // where Lease came from
	uplink  *datapath.Uplink
	stats   func() (bytesIn, bytesOut uint64)
	dtls    func() bool // AnyConnect: whether data moves over DTLS
	timeout *time.Timer
	idle    idleMark // the idle watcher's alone
}

// Login is what a protocol learned about a client that wants in.
type Login struct {
	Protocol string
	Remote   netip.AddrPort
	Group    string                // the connection profile ("" for the server's default)
	User     string                // as the client gave it; "" to take the certificate's common name
	Cert     *x509.Certificate     // verified by the TLS handshake against the server's trust store
	Chains   [][]*x509.Certificate // Cert's verified chains from the handshake, leaf first
	Password string                // the password, when the client sent one
	OTP      string                // the one-time password, when the client sent one
	HasOTP   bool
	Cipher   string
}

// Refusal is a login the server turned down. Its message is for the client's log.
type Refusal struct {
	Reason string // one of the Refused* constants
	Msg    string
	Err    error // the underlying error, if any
}

func (r *Refusal) Error() string { return r.Msg }
func (r *Refusal) Unwrap() error { return r.Err }

// Server is one running SSL-VPN server. See the package comment.
type Server struct {
	name  string
	tun   string
	log   *slog.Logger
	auth  *userauth.Checker
	trust *trust.Store
	pool  *pool.Pool                  // the server's own pool (OpenVPN, and groups without one of their own)
	pools map[netip.Prefix]*pool.Pool // every pool, the server's and the groups', by network
	dp    *datapath.Device
	ovpn  *openvpn.Server
	ac    *anyconnect.Server
	demux *demux.Demux // the TCP listeners'
	cfg   atomic.Pointer[ServerConfig]

	mu           sync.Mutex
	sessions     map[string]*Session
	byOVPN       map[uint64]*Session // OpenVPN engine session id → session
	byAnyConnect map[uint64]*Session // AnyConnect engine session id → session
	refused      map[string]uint64
	failed       map[string]uint64 // handshakes that failed, by protocol ("openvpn-udp", "anyconnect"...)

	failureLog throttledLog // the handshake failures' lines

	cancel  context.CancelFunc
	closers []io.Closer // the listeners, closed by stop so their ports are free at once
	wg      sync.WaitGroup
}

// startServer brings a server up: pool, TUN device and its address, trust store, protocol engines, listeners.
func startServer(cfg *ServerConfig, tunName string, deps *Options, auth *userauth.Checker) (_ *Server, err error) {
	s := &Server{name: cfg.Name, tun: tunName, log: deps.Logger.With("server", cfg.Name), auth: auth, trust: &trust.Store{},
		sessions: map[string]*Session{}, byOVPN: map[uint64]*Session{}, byAnyConnect: map[uint64]*Session{}, refused: map[string]uint64{}}
	s.cfg.Store(cfg)
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if err := s.trust.Set(cfg.CAs, cfg.CRLs); err != nil {
		return nil, err
	}
	s.pools = map[netip.Prefix]*pool.Pool{}
	for _, pfx := range cfg.poolPrefixes() {
		p, err := pool.New(pfx, cfg.Topology, cfg.AddressHold)
		if err != nil {
			return nil, err
		}
		s.pools[pfx] = p
	}
	s.pool = s.pools[cfg.Pool]
	dev, err := deps.TUN.Create(tunName, 1500)
	if err != nil {
		return nil, fmt.Errorf("sslvpn: server %s: TUN device %s: %w", cfg.Name, tunName, err)
	}
	if s.dp, err = datapath.New(dev, datapath.Options{}); err != nil {
		dev.Close()
		return nil, err
	}
	undo = append(undo, func() { s.dp.Close() })
	// One address in each pool: the kernel then routes every pool to the TUN device.
	for pfx, p := range s.pools {
		if err := deps.Links.AddAddress(tunName, netip.PrefixFrom(p.Server(), pfx.Bits())); err != nil {
			return nil, err
		}
	}
	if err := deps.Links.SetUp(tunName, true); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	undo = append(undo, func() { cancel(); s.wg.Wait() })

	if cfg.OpenVPN.Enabled {
		ocfg := openvpn.Config{
			TLS:              s.trust.ServerConfig(cfg.Certificate, true),
			DataCiphers:      cfg.OpenVPN.Ciphers,
			Auth:             cfg.OpenVPN.Auth,
			TLSCrypt:         cfg.OpenVPN.TLSCrypt,
			RenegotiateAfter: cfg.OpenVPN.RenegotiateAfter,
			Keepalive:        cfg.OpenVPN.Keepalive,
			KeepaliveTimeout: cfg.OpenVPN.KeepaliveTimeout,
		}
		if s.ovpn, err = openvpn.NewServer(ocfg, (*openvpnBackend)(s)); err != nil {
			return nil, err
		}
		undo = append(undo, func() { s.ovpn.Close() })
	}
	if cfg.AnyConnect.Enabled {
		groups := cfg.Groups
		if len(groups) == 0 {
			groups = []*GroupConfig{cfg.group(defaultGroup)}
		}
		allCerts := true
		acfg := anyconnect.Config{DefaultGroup: cfg.AnyConnect.DefaultGroup, DTLS: cfg.AnyConnect.DTLS, ServerName: cfg.Name,
			SessionTimeout: cfg.SessionTimeout, IdleTimeout: cfg.IdleTimeout}
		for _, g := range groups {
			allCerts = allCerts && g.Certificate
			acfg.Groups = append(acfg.Groups, anyconnect.Group{Name: g.Name, Label: g.Label, Certificate: g.Certificate, Password: g.Password, OTP: g.OTP})
		}
		// Groups that log in without a certificate make the certificate optional in the handshake; a group that
		// requires one still refuses a login without it.
		acfg.TLS = s.trust.ServerConfig(cfg.Certificate, allCerts)
		if s.ac, err = anyconnect.NewServer(acfg, (*anyconnectBackend)(s)); err != nil {
			return nil, err
		}
		undo = append(undo, func() { s.ac.Close() })
	}
	// Listeners last: a port in use fails the start before any client can arrive. TCP ports are shared by
	// protocol (the demultiplexer tells them apart by their first bytes).
	tcp := map[int]map[demux.Protocol]demux.Handler{}
	if cfg.OpenVPN.Enabled && cfg.OpenVPN.TCPPort > 0 {
		tcp[cfg.OpenVPN.TCPPort] = map[demux.Protocol]demux.Handler{
			demux.OpenVPNTCP: func(ctx context.Context, c net.Conn) { _ = s.ovpn.ServeConn(ctx, c) },
		}
	}
	if s.ac != nil {
		if tcp[cfg.AnyConnect.Port] == nil {
			tcp[cfg.AnyConnect.Port] = map[demux.Protocol]demux.Handler{}
		}
		tcp[cfg.AnyConnect.Port][demux.TLS] = func(ctx context.Context, c net.Conn) { _ = s.ac.ServeConn(ctx, c) }
	}
	// One demultiplexer for all of the server's TCP ports: its bounds on connections awaiting login are the
	// server's.
	s.demux = demux.New(demux.Options{Rejected: func(remote net.Addr, err error) {
		s.log.Debug("connection closed before login", "remote", remote, "err", err)
	}})
	for port, handlers := range tcp {
		ln, err := net.Listen("tcp", cfg.listenAddress(port))
		if err != nil {
			return nil, fmt.Errorf("sslvpn: server %s: listen on TCP %d: %w", cfg.Name, port, err)
		}
		s.closers = append(s.closers, ln)
		undo = append(undo, func() { ln.Close() })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.demux.Serve(ctx, ln, handlers); err != nil {
				s.log.Error("TCP listener failed", "port", port, "err", err)
			}
		}()
	}
	udp := func(port int, serve func(context.Context, net.PacketConn) error) error {
		pc, err := net.ListenPacket("udp", cfg.listenAddress(port))
		if err != nil {
			return fmt.Errorf("sslvpn: server %s: listen on UDP %d: %w", cfg.Name, port, err)
		}
		s.closers = append(s.closers, pc)
		undo = append(undo, func() { pc.Close() })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serve(ctx, pc); err != nil && ctx.Err() == nil {
				s.log.Error("UDP listener failed", "port", port, "err", err)
			}
		}()
		return nil
	}
	if cfg.OpenVPN.Enabled && cfg.OpenVPN.UDPPort > 0 {
		if err := udp(cfg.OpenVPN.UDPPort, s.ovpn.ServeUDP); err != nil {
			return nil, err
		}
	}
	if s.ac != nil && cfg.AnyConnect.DTLS {
		if err := udp(cfg.AnyConnect.Port, s.ac.ServeDTLS); err != nil {
			return nil, err
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchIdle(ctx)
	}()
	s.log.Info("SSL-VPN server started", "tun", tunName, "pools", cfg.poolPrefixes(), "topology", cfg.Topology,
		"max_sessions", cfg.MaxSessions, "openvpn_tcp", cfg.OpenVPN.TCPPort, "openvpn_udp", cfg.OpenVPN.UDPPort,
		"anyconnect", cfg.AnyConnect.Port, "dtls", cfg.AnyConnect.DTLS)
	return s, nil
}

// update applies a configuration that needs no restart: users, OTP, limits, routes for new sessions, CAs and
// CRLs. Sessions whose certificate the new CRLs revoke, and sessions of users now disabled, are cut.
func (s *Server) update(cfg *ServerConfig) error {
	if err := s.trust.Set(cfg.CAs, cfg.CRLs); err != nil {
		return err
	}
	s.cfg.Store(cfg)
	if s.ac != nil {
		// Logins that have not connected yet hold a cookie: a revoked certificate must not use it.
		if n := s.ac.Revoke(func(id *anyconnect.Identity) bool {
			ld, ok := id.Data.(loginData)
			return ok && ld.login.Cert != nil && s.trust.Revoked(ld.login.Chains) != nil
		}, "certificate revoked"); n > 0 {
			s.log.Warn("AnyConnect cookies of revoked certificates invalidated", "count", n)
		}
	}
	if s.ac != nil {
		// Nor may a user disabled or deleted since their login.
		for why, reason := range map[error]string{errUserDisabled: "user disabled", errNoSuchUser: "user deleted"} {
			if n := s.ac.Revoke(func(id *anyconnect.Identity) bool {
				ld, ok := id.Data.(loginData)
				return ok && errors.Is(userGone(cfg, id.User, ld.known), why)
			}, reason); n > 0 {
				s.log.Warn("AnyConnect cookies invalidated", "why", reason, "count", n)
			}
		}
	}
	for _, sess := range s.Sessions() {
		// What the session may reach follows the configuration at once, without a reconnect.
		sess.uplink.SetReach(s.reachOf(cfg, cfg.group(sess.profile)))
		if err := s.trust.Revoked(sess.Chains); sess.Cert != nil && err != nil {
			s.log.Warn("cutting a session: its certificate is revoked", "user", sess.User, "session", sess.ID, "serial", fmt.Sprintf("%X", sess.Cert.SerialNumber), "why", err)
			sess.peer.Close("certificate revoked")
			continue
		}
		switch err := userGone(cfg, sess.User, sess.known); {
		case errors.Is(err, errUserDisabled):
			s.log.Warn("cutting a session: the user is disabled", "user", sess.User, "session", sess.ID)
			sess.peer.Close("user disabled")
		case err != nil:
			s.log.Warn("cutting a session: the user was deleted", "user", sess.User, "session", sess.ID)
			sess.peer.Close("user deleted")
		}
	}
	return nil
}

// stop ends every session and the listeners, and removes the TUN device.
func (s *Server) stop() {
	s.cancel()
	for _, c := range s.closers {
		c.Close()
	}
	if s.ovpn != nil {
		s.ovpn.Close()
	}
	if s.ac != nil {
		s.ac.Close()
	}
	s.wg.Wait()
	s.dp.Close()
	s.failureLog.stop()
	s.log.Info("SSL-VPN server stopped")
}

// userGone says why a user who logged in may no longer have a session: disabled, or, when they were a configured
// user at login (known), deleted since. A user known by their certificate alone is never gone.
func userGone(cfg *ServerConfig, user string, known bool) error {
	u, ok := cfg.Users[user]
	switch {
	case ok && u.Disabled:
		return errUserDisabled
	case known && !ok:
		return errNoSuchUser
	}
	return nil
}

// admit authenticates a client and attaches it in one step, as OpenVPN does (its login and tunnel are one
// exchange). peer receives the client's LAN traffic from then on.
func (s *Server) admit(ctx context.Context, l *Login, peer Peer, m peerMeters) (*Session, error) {
	user, known, err := s.authenticate(ctx, l)
	if err != nil {
		return nil, err
	}
	return s.attach(user, known, l, peer, m)
}

// peerMeters read a protocol session's counters for status; either may be nil.
type peerMeters struct {
	bytes func() (in, out uint64)
	dtls  func() bool
}

// authenticate checks who a client is, with the factors its group asks for: the certificate (not revoked, issued
// to the user), the user (known, not disabled), the password and the one-time password. It returns the user's
// name, and whether they are a configured user. Every check of a password or a one-time password goes through
// the userauth.Checker, for a known user or not, so a failure looks and lasts the same whoever it is.
func (s *Server) authenticate(ctx context.Context, l *Login) (user string, known bool, err error) {
	cfg := s.cfg.Load()
	g := cfg.group(l.Group)
	if g == nil {
		return "", false, s.refuse(RefusedIdentity, l, l.User, fmt.Sprintf("no connection profile %q", l.Group), nil)
	}
	user = l.User
	if l.Cert != nil {
		if err := s.trust.Revoked(l.Chains); err != nil {
			return "", false, s.refuse(RefusedRevoked, l, l.Cert.Subject.CommonName,
				fmt.Sprintf("certificate %X of %s is revoked", l.Cert.SerialNumber, l.Cert.Subject.CommonName), err)
		}
	}
	if l.Cert != nil {
		cn := l.Cert.Subject.CommonName
		switch {
		case user == "":
			user = cn
		case cn != user:
			return "", false, s.refuse(RefusedIdentity, l, user, fmt.Sprintf("the certificate is issued to %q, not to user %q", cn, user), nil)
		}
	} else if g.Certificate {
		return "", false, s.refuse(RefusedIdentity, l, user, "this profile requires a client certificate", nil)
	}
	if user == "" {
		return "", false, s.refuse(RefusedIdentity, l, user, "no user name and no certificate", nil)
	}
	if g.OTP && !l.HasOTP {
		// The client's profile, not the user, is wrong: this says nothing about the user.
		return "", false, s.refuse(RefusedOTP, l, user, "this server requires a one-time password (static-challenge in the client configuration)", nil)
	}
	u, known := cfg.Users[user]
	why := userGone(cfg, user, true)
	if !g.Password && !g.OTP {
		// A certificate alone: nothing to guess, and a user it names need not be configured.
		if errors.Is(why, errUserDisabled) {
			return "", false, s.refuseLogin(RefusedDisabled, l, user, why)
		}
		return user, known, nil
	}
	err = s.auth.Check(ctx, userauth.Attempt{User: user, Source: l.Remote.Addr(),
		CheckPassword: g.Password, Hash: u.PasswordHash, Password: l.Password,
		CheckCode: g.OTP, Secret: u.OTPSecret, Code: l.OTP, Refuse: why})
	if err != nil {
		reason := RefusedPassword
		switch {
		case errors.Is(err, errUserDisabled):
			reason = RefusedDisabled
		case errors.Is(err, userauth.ErrLocked) || errors.Is(err, userauth.ErrSourceBlocked) || errors.Is(err, userauth.ErrSlowedDown):
			reason = RefusedLocked
		case errors.Is(err, userauth.ErrBusy):
			reason = RefusedBusy
		case errors.Is(err, userauth.ErrWrongCode) || errors.Is(err, userauth.ErrReplayedCode) || errors.Is(err, userauth.ErrNoOTP) ||
			errors.Is(err, userauth.ErrReplayState) || (!g.Password && errors.Is(err, errNoSuchUser)):
			reason = RefusedOTP
		}
		return "", false, s.refuseLogin(reason, l, user, err)
	}
	return user, known, nil
}

// attach gives an authenticated user's session an address from its group's pool and a route, within the
// server's session limit (all protocols and groups together) and its limit per user. known says the user was a
// configured one at login.
func (s *Server) attach(user string, known bool, l *Login, peer Peer, m peerMeters) (*Session, error) {
	cfg := s.cfg.Load()
	g := cfg.group(l.Group)
	if g == nil {
		return nil, s.refuse(RefusedIdentity, l, user, fmt.Sprintf("no connection profile %q", l.Group), nil)
	}
	p := s.pools[g.Pool]
	if p == nil {
		p = s.pool
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= cfg.MaxSessions {
		return nil, s.refuseLocked(RefusedLimit, l, user, fmt.Sprintf("connection limit reached: %d sessions (%s); try again later", cfg.MaxSessions, cfg.LimitName), nil)
	}
	if limit := cfg.MaxSessionsPerUser; limit > 0 {
		n := 0
		for _, other := range s.sessions {
			if other.User == user {
				n++
			}
		}
		if n >= limit {
			return nil, s.refuseLocked(RefusedUserLimit, l, user, fmt.Sprintf("user %s already has %d sessions, the most one user may hold (max-sessions-per-user %d); end one first", user, n, limit), nil)
		}
	}
	lease, err := p.Acquire(user)
	if err != nil {
		return nil, s.refuseLocked(RefusedPool, l, user, "no free client address: "+err.Error(), err)
	}
	up, err := s.dp.Attach(lease.Addr, peer, s.reachOf(cfg, g))
	if err != nil {
		p.Release(lease)
		return nil, err
	}
	sess := &Session{ID: newID(), Protocol: l.Protocol, Group: g.Name, User: user, Cert: l.Cert, Chains: l.Chains, Remote: l.Remote, Lease: lease,
		Cipher: l.Cipher, Started: time.Now().UTC(), known: known, profile: l.Group, peer: peer, uplink: up, pool: p, stats: m.bytes, dtls: m.dtls}
	s.sessions[sess.ID] = sess
	if cfg.SessionTimeout > 0 {
		sess.timeout = time.AfterFunc(cfg.SessionTimeout, func() { peer.Close("session time limit reached") })
	}
	s.log.Info("client connected", "user", user, "session", sess.ID, "protocol", l.Protocol, "group", g.Name, "remote", l.Remote,
		"address", lease.Addr, "cipher", l.Cipher, "sessions", len(s.sessions), "max_sessions", cfg.MaxSessions)
	return sess, nil
}

// reachOf is where a session of profile g may send: the networks pushed to it (its routes, its name servers,
// everything for a full tunnel) and the server's own tunnel addresses, never another client (the pools). A
// profile that no longer exists reaches nothing.
func (s *Server) reachOf(cfg *ServerConfig, g *GroupConfig) *datapath.Reach {
	if g == nil {
		return nil
	}
	allow := slices.Clone(g.Routes)
	for _, d := range cfg.DNS {
		allow = append(allow, netip.PrefixFrom(d, d.BitLen()))
	}
	if g.RedirectGateway {
		allow = append(allow, netip.MustParsePrefix("0.0.0.0/0"))
	}
	var deny []netip.Prefix
	for _, p := range append([]*pool.Pool{s.pool}, slices.Collect(maps.Values(s.pools))...) {
		if p != nil && !slices.Contains(deny, p.Prefix()) {
			deny = append(deny, p.Prefix())
			allow = append(allow, netip.PrefixFrom(p.Server(), 32))
		}
	}
	return datapath.NewReach(allow, deny)
}

// refuse counts and logs a refusal whose message the client may read.
func (s *Server) refuse(reason string, l *Login, user, msg string, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refuseLocked(reason, l, user, msg, err)
}

func (s *Server) refuseLocked(reason string, l *Login, user, msg string, err error) error {
	s.refused[reason]++
	s.log.Warn("client refused", "reason", reason, "user", user, "protocol", l.Protocol, "remote", l.Remote, "why", msg)
	return &Refusal{Reason: reason, Msg: msg, Err: err}
}

// refuseLogin counts and logs a failed login: the log says why, the client is told userauth.ErrLoginFailed.
func (s *Server) refuseLogin(reason string, l *Login, user string, why error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused[reason]++
	s.log.Warn("client refused", "reason", reason, "user", user, "protocol", l.Protocol, "remote", l.Remote, "why", why.Error())
	return &Refusal{Reason: reason, Msg: userauth.ErrLoginFailed.Error(), Err: why}
}

// release ends a session's claim on its address and route.
func (s *Server) release(sess *Session, why error) {
	if sess.timeout != nil {
		sess.timeout.Stop()
	}
	s.dp.Detach(sess.Lease.Addr, sess.peer)
	sess.pool.Release(sess.Lease)
	s.mu.Lock()
	delete(s.sessions, sess.ID)
	n := len(s.sessions)
	s.mu.Unlock()
	s.log.Info("client disconnected", "user", sess.User, "session", sess.ID, "why", why, "sessions", n,
		"duration", time.Since(sess.Started).Round(time.Second))
}

// Sessions returns the connected sessions, oldest first.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.sessions))
	slices.SortFunc(out, func(a, b *Session) int { return a.Started.Compare(b.Started) })
	return out
}

// disconnect cuts one session.
func (s *Server) disconnect(id, reason string) bool {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return false
	}
	sess.peer.Close(reason)
	return true
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// openvpnBackend is the Server as the OpenVPN engine's Backend.
type openvpnBackend Server

// Connect implements openvpn.Backend.
func (b *openvpnBackend) Connect(ctx context.Context, req *openvpn.ConnectRequest, os openvpn.Session) (*openvpn.Grant, error) {
	s := (*Server)(b)
	l := &Login{Protocol: "openvpn-" + string(req.Transport), Remote: req.Remote, User: req.Username, Cipher: req.Cipher}
	if len(req.VerifiedChains) > 0 {
		l.Cert, l.Chains = req.VerifiedChains[0][0], req.VerifiedChains
	} else if len(req.PeerCertificates) > 0 {
		l.Cert, l.Chains = req.PeerCertificates[0], [][]*x509.Certificate{req.PeerCertificates}
	}
	if _, otp, err := openvpn.ParseStaticChallenge(req.Password); err == nil {
		l.OTP, l.HasOTP = otp, true
	}
	sess, err := s.admit(ctx, l, os, peerMeters{bytes: func() (uint64, uint64) { st := os.Stats(); return st.BytesIn, st.BytesOut }})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.byOVPN[os.ID()] = sess
	s.mu.Unlock()
	cfg := s.cfg.Load()
	g := &openvpn.Grant{Uplink: sess.uplink, Routes: cfg.Routes, RedirectGateway: cfg.RedirectGateway, DNS: cfg.DNS}
	if cfg.Topology == pool.Net30 {
		g.Topology, g.Address, g.Gateway = openvpn.TopologyNet30, netip.PrefixFrom(sess.Lease.Addr, 30), sess.Lease.Peer
	} else {
		g.Topology, g.Address, g.Gateway = openvpn.TopologySubnet, netip.PrefixFrom(sess.Lease.Addr, cfg.Pool.Bits()), sess.Lease.Peer
	}
	s.log.Info("OpenVPN data channel", "user", sess.User, "session", sess.ID, "cipher", req.Cipher, "auth", req.Auth,
		"key_derivation", req.KeyDerivation, "client_ciphers", req.PeerInfo.Ciphers, "client_version", req.PeerInfo.Version)
	return g, nil
}

// Disconnected implements openvpn.Backend.
func (b *openvpnBackend) Disconnected(os openvpn.Session, reason error) {
	s := (*Server)(b)
	s.mu.Lock()
	sess := s.byOVPN[os.ID()]
	delete(s.byOVPN, os.ID())
	s.mu.Unlock()
	if sess != nil {
		s.release(sess, reason)
	}
}

// HandshakeFailed implements openvpn.HandshakeObserver: clients refused before Connect (a revoked or expired
// certificate fails the TLS handshake) are counted and logged with their reason.
func (b *openvpnBackend) HandshakeFailed(remote netip.AddrPort, transport openvpn.Transport, err error) {
	(*Server)(b).handshakeFailed("openvpn-"+string(transport), "OpenVPN handshake failed", remote, err)
}

// handshakeFailed counts a client that failed before it logged in, by protocol, and logs it; a flood of them
// is logged a few lines at a time (throttledLog). Handshakes cut by a shutdown are neither.
func (s *Server) handshakeFailed(protocol, msg string, remote netip.AddrPort, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, openvpn.ErrShutdown) || errors.Is(err, anyconnect.ErrShutdown) {
		s.log.Debug(msg, "remote", remote, "err", err)
		return
	}
	s.mu.Lock()
	if s.failed == nil {
		s.failed = map[string]uint64{}
	}
	s.failed[protocol]++
	s.mu.Unlock()
	s.failureLog.Log(s.log, slog.LevelWarn, "handshake failures", msg, "remote", remote, "protocol", protocol, "err", err)
}
