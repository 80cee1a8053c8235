package sslvpn

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"toride/sslvpn/anyconnect"
)

// anyconnectBackend is the Server as the AnyConnect engine's Backend. The engine logs a client in
// (Authenticate, every factor at once) before its tunnel exists, and admits the tunnel later (Connect); a client
// that reconnects with its cookie is the same session and is not admitted again.
type anyconnectBackend Server

// loginData travels from Authenticate to Connect inside the engine's Identity.
type loginData struct{ login *Login }

// Authenticate implements anyconnect.Backend.
func (b *anyconnectBackend) Authenticate(ctx context.Context, req *anyconnect.AuthRequest) (*anyconnect.Identity, error) {
	s := (*Server)(b)
	l := &Login{Protocol: "anyconnect", Remote: req.Remote, Group: req.Group, User: req.Username, Cert: req.Certificate,
		Password: req.Password, OTP: req.OTP, HasOTP: req.HasOTP}
	user, _, err := s.authenticate(ctx, l)
	if err != nil {
		return nil, err
	}
	return &anyconnect.Identity{User: user, Certificate: req.Certificate, Data: loginData{l}}, nil
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
	// A certificate revoked since the login must not get a tunnel.
	if l.Cert != nil && s.trust.Revoked(l.Cert) {
		return nil, s.refuse(RefusedRevoked, &l, req.Identity.User, "certificate revoked", nil)
	}
	sess, err := s.attach(req.Identity.User, &l, as, peerMeters{bytes: func() (uint64, uint64) { st := as.Stats(); return st.BytesIn, st.BytesOut }, dtls: as.DTLS})
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
	s := (*Server)(b)
	level := slog.LevelWarn
	if errors.Is(err, context.Canceled) {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "AnyConnect handshake failed", "remote", remote, "err", err)
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
