package sslvpn

import (
	"context"
	"errors"
	"net/netip"

	"toride/sslvpn/anyconnect"
)

// anyconnectBackend is the Server as the AnyConnect engine's Backend. The engine logs a client in
// (Authenticate, every factor at once) before its tunnel exists, and admits the tunnel later (Connect); a client
// that reconnects with its cookie is the same session and is not admitted again, but is checked again
// (CheckReconnect): the user may have been disabled or deleted, the certificate revoked, since the login.
type anyconnectBackend Server

// loginData travels from Authenticate to Connect inside the engine's Identity.
type loginData struct {
	login *Login
	known bool // the user was a configured one at login
}

// Authenticate implements anyconnect.Backend.
func (b *anyconnectBackend) Authenticate(ctx context.Context, req *anyconnect.AuthRequest) (*anyconnect.Identity, error) {
	s := (*Server)(b)
	l := &Login{Protocol: "anyconnect", Remote: req.Remote, Group: req.Group, User: req.Username, Cert: req.Certificate,
		Chains: req.VerifiedChains, Password: req.Password, OTP: req.OTP, HasOTP: req.HasOTP}
	user, known, err := s.authenticate(ctx, l)
	if err != nil {
		return nil, err
	}
	return &anyconnect.Identity{User: user, Certificate: req.Certificate, Data: loginData{login: l, known: known}}, nil
}

// recheck checks again, at a CONNECT, what a login established: the certificate is not revoked, and the user is
// neither disabled nor (if configured at login) deleted since.
func (s *Server) recheck(l *Login, user string, known bool) error {
	if l.Cert != nil {
		if err := s.trust.Revoked(l.Chains); err != nil {
			return s.refuse(RefusedRevoked, l, user, "certificate revoked", err)
		}
	}
	if err := userGone(s.cfg.Load(), user, known); err != nil {
		return s.refuse(RefusedDisabled, l, user, "the user is disabled or was deleted since the login; the session cookie is no longer valid", err)
	}
	return nil
}

// Connect implements anyconnect.Backend.
func (b *anyconnectBackend) Connect(ctx context.Context, req *anyconnect.ConnectRequest, as anyconnect.Session) (*anyconnect.Grant, error) {
	s := (*Server)(b)
	ld, ok := req.Identity.Data.(loginData)
	if !ok {
		return nil, errors.New("sslvpn: an AnyConnect identity this server did not make")
	}
	l := *ld.login
	l.Remote = req.Remote
	if err := s.recheck(&l, req.Identity.User, ld.known); err != nil {
		return nil, err
	}
	sess, err := s.attach(req.Identity.User, ld.known, &l, as, peerMeters{bytes: func() (uint64, uint64) { st := as.Stats(); return st.BytesIn, st.BytesOut }, dtls: as.DTLS})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.byAnyConnect[as.ID()] = sess
	s.mu.Unlock()
	cfg := s.cfg.Load()
	g := cfg.group(l.Group)
	return &anyconnect.Grant{
		Uplink:     sess.uplink,
		Address:    netip.PrefixFrom(sess.Lease.Addr, sess.pool.Prefix().Bits()),
		Routes:     g.Routes,
		FullTunnel: g.RedirectGateway,
		DNS:        cfg.DNS,
	}, nil
}

// CheckReconnect implements anyconnect.ReconnectChecker.
func (b *anyconnectBackend) CheckReconnect(ctx context.Context, req *anyconnect.ConnectRequest, as anyconnect.Session) error {
	s := (*Server)(b)
	ld, ok := req.Identity.Data.(loginData)
	if !ok {
		return errors.New("sslvpn: an AnyConnect identity this server did not make")
	}
	l := *ld.login
	l.Remote = req.Remote
	return s.recheck(&l, req.Identity.User, ld.known)
}

// Disconnected implements anyconnect.Backend.
func (b *anyconnectBackend) Disconnected(as anyconnect.Session, reason error) {
	s := (*Server)(b)
	s.mu.Lock()
	sess := s.byAnyConnect[as.ID()]
	delete(s.byAnyConnect, as.ID())
	s.mu.Unlock()
	if sess != nil {
		s.release(sess, reason)
	}
}

// HandshakeFailed implements anyconnect.HandshakeObserver.
func (b *anyconnectBackend) HandshakeFailed(remote netip.AddrPort, err error) {
	(*Server)(b).handshakeFailed("anyconnect", "AnyConnect handshake failed", remote, err)
}

// SessionEvent implements anyconnect.SessionObserver: transport changes go to the log.
func (b *anyconnectBackend) SessionEvent(as anyconnect.Session, ev anyconnect.Event) {
	s := (*Server)(b)
	attrs := []any{"user", as.Identity().User, "event", ev.Kind.String()}
	if ev.Remote.IsValid() {
		attrs = append(attrs, "remote", ev.Remote)
	}
	if ev.Cipher != "" {
		attrs = append(attrs, "cipher", ev.Cipher)
	}
	if ev.Err != nil {
		attrs = append(attrs, "why", ev.Err)
	}
	s.log.Info("AnyConnect transport", attrs...)
}

var _ anyconnect.ReconnectChecker = (*anyconnectBackend)(nil)
