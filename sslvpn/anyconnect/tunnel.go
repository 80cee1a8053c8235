package anyconnect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"toride/sslvpn/anyconnect/internal/cstp"
	"toride/sslvpn/anyconnect/internal/httpwire"
)

// pskLabel is the TLS exporter label of PSK-NEGOTIATE: openconnect and ocserv derive the DTLS pre-shared key
// from the TLS session with it (32 bytes, no context).
const pskLabel = "EXPORTER-openconnect-psk"

const (
	pskLen   = 32
	appIDLen = 32
)

// connectParams are what a client's CONNECT asks for.
type connectParams struct {
	hostname     string
	userAgent    string
	baseMTU, mtu int
	address      netip.Addr
	pskNegotiate bool
}

func parseConnect(req *httpwire.Request) connectParams {
	cp := connectParams{hostname: req.Get("X-CSTP-Hostname"), userAgent: req.Get("User-Agent")}
	cp.baseMTU, _ = strconv.Atoi(req.Get("X-CSTP-Base-MTU"))
	cp.mtu, _ = strconv.Atoi(req.Get("X-CSTP-MTU"))
	for _, v := range req.Values("X-CSTP-Address") {
		if a, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil && a.Is4() {
			cp.address = a
		}
	}
	for _, h := range []string{"X-DTLS-CipherSuite", "X-DTLS12-CipherSuite"} {
		for suite := range strings.SplitSeq(req.Get(h), ":") {
			if strings.TrimSpace(suite) == "PSK-NEGOTIATE" {
				cp.pskNegotiate = true
			}
		}
	}
	return cp
}

// tunnelMTU is the MTU offered over a link of baseMTU bytes: what fits in one DTLS 1.2 AES-GCM record over
// IPv4 (20 IP + 8 UDP + 13 record header + 8 explicit nonce + 16 tag + 1 AnyConnect header); TLS over TCP
// carries that too.
func (s *Server) tunnelMTU(cp connectParams) (base, mtu int) {
	base = cp.baseMTU
	if base < 576 || base > 1500 {
		base = 1500
	}
	mtu = base - 66
	if s.cfg.MTU > 0 && mtu > s.cfg.MTU {
		mtu = s.cfg.MTU
	}
	if cp.mtu >= 576 && cp.mtu < mtu {
		mtu = cp.mtu
	}
	return base, max(mtu, 576-66)
}

// serveTunnel answers a CONNECT: a new session on the first one with a cookie, the same session again on a
// reconnect, then reads the session's CSTP frames from this connection until it ends.
func (s *Server) serveTunnel(ctx context.Context, cn *conn, cork *corkConn, req *httpwire.Request) error {
	refuse := func(status int, reason string) {
		_ = s.write(cn, &httpwire.Response{Status: status, NoBody: false, Header: append(closeHeader(),
			httpwire.Field{Name: "X-Reason", Value: reason})})
	}
	ck := s.cookieOf(req)
	if ck == nil {
		s.st.badCookies.Add(1)
		refuse(401, "the session cookie is invalid or has expired; log in again")
		return fmt.Errorf("%w: CONNECT from %s", ErrBadCookie, cn.remote)
	}
	if !ck.presentedWith(cn) {
		// Someone else's cookie, or the right one without the certificate it belongs to: refused, and the
		// cookie stays valid for its holder.
		s.st.badCookies.Add(1)
		refuse(401, "this profile requires the client certificate the login used")
		return fmt.Errorf("%w: CONNECT from %s without the login's certificate", ErrBadCookie, cn.remote)
	}
	// One CONNECT per cookie at a time: a login never makes two sessions.
	select {
	case ck.connectSem() <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrShutdown, ctx.Err())
	}
	release := func() { <-ck.connectSem() }
	locked := true
	defer func() {
		if locked {
			release()
		}
	}()

	cp := parseConnect(req)
	var psk []byte
	useDTLS := s.cfg.DTLS && cp.pskNegotiate
	if useDTLS {
		var err error
		if psk, err = cn.state.ExportKeyingMaterial(pskLabel, nil, pskLen); err != nil {
			// TLS 1.2 without extended master secret (openconnect 9.01 over TLS 1.2 does not offer it): the
			// exporter is open to the triple-handshake attack and crypto/tls refuses it. No DTLS then; the
			// session runs over TLS. TLS 1.3 always has a safe exporter.
			useDTLS = false
			s.st.noExporter.Add(1)
		}
	}
	var appID [appIDLen]byte
	_, _ = rand.Read(appID[:])
	t := newTransport(cn, cork)

	s.mu.Lock()
	valid := s.cookies[ck.hash] == ck
	sess := ck.sess
	s.mu.Unlock()
	if !valid {
		s.st.badCookies.Add(1)
		refuse(401, "the session cookie was revoked; log in again")
		return fmt.Errorf("%w: revoked during CONNECT", ErrBadCookie)
	}
	reconnect := sess != nil
	var err error
	if reconnect {
		err = s.recheck(ctx, ck, sess, cn, cp, useDTLS)
	} else {
		sess, err = s.admit(ctx, ck, cn, cp, useDTLS)
	}
	if err != nil {
		var refusal *refusalError
		if errors.As(err, &refusal) {
			refuse(refusal.status, refusal.reason)
		}
		return err
	}
	// Logged in from here on: said before the answer goes out, so that the listener stops counting this
	// connection among those awaiting login by the time the client sees it is in.
	cn.loggedIn()
	base, mtu := s.tunnelMTU(cp)
	resp := &httpwire.Response{Status: 200, Reason: "CONNECTED", NoBody: true,
		Header: sess.connectHeaders(cn, base, mtu, useDTLS, appID)}
	if err := s.write(cn, resp); err != nil {
		return fmt.Errorf("%w: writing the CONNECT answer: %v", ErrTransport, err)
	}
	if err := sess.attach(t, appID, psk, useDTLS); err != nil {
		// Cut while connecting (Session.Close during admission): tell the client why, as a live session would.
		if msg := sess.endMessage(); msg != "" {
			f, _ := cstp.AppendFrame(nil, cstp.Disconnect, append([]byte{cstp.DisconnectCode}, msg...))
			_ = cn.tls.SetWriteDeadline(s.now().Add(s.cfg.HandshakeTimeout))
			_, _ = cn.tls.Write(f)
		}
		return err
	}
	if reconnect {
		s.st.reconnects.Add(1)
		sess.stats.reconnects.Add(1)
		sess.event(Event{Kind: EventReconnected, Remote: cn.remote})
	}
	release()
	locked = false
	cn.inTunnel = true
	err = sess.readCSTP(t)
	sess.transportEnded(t, err)
	return err
}

// refusalError is a CONNECT the engine answered with an error status.
type refusalError struct {
	status int
	reason string
	err    error
}

func (r *refusalError) Error() string { return r.err.Error() }
func (r *refusalError) Unwrap() error { return r.err }

// connectRequest describes a CONNECT with a cookie to the backend.
func (s *Server) connectRequest(ck *cookie, cn *conn, cp connectParams, useDTLS bool) *ConnectRequest {
	return &ConnectRequest{Remote: cn.remote, Group: ck.group.Name, Identity: ck.ident, TLSVersion: cn.state.Version,
		CipherSuite: cn.state.CipherSuite, Hostname: cp.hostname, UserAgent: cp.userAgent, RequestedAddress: cp.address,
		BaseMTU: cp.baseMTU, DTLS: useDTLS}
}

// recheck asks a ReconnectChecker backend whether a session's client may come back; when it may not, the cookie
// is invalidated and the session ended.
func (s *Server) recheck(ctx context.Context, ck *cookie, sess *session, cn *conn, cp connectParams, useDTLS bool) error {
	rc, ok := s.be.(ReconnectChecker)
	if !ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	err := rc.CheckReconnect(cctx, s.connectRequest(ck, cn, cp, useDTLS), sess)
	cancel()
	if err == nil {
		return nil
	}
	s.st.refused.Add(1)
	s.dropCookie(ck, fmt.Errorf("%w: reconnect refused: %v", ErrKilled, err), formMessage(err.Error()))
	return &refusalError{401, formMessage(err.Error()), fmt.Errorf("%w: reconnect: %v", ErrRefused, err)}
}

// admit makes a new session for a cookie's first CONNECT: Backend.Connect, then the session's goroutines.
func (s *Server) admit(ctx context.Context, ck *cookie, cn *conn, cp connectParams, useDTLS bool) (*session, error) {
	sess := s.newSession(ck, cn)
	creq := s.connectRequest(ck, cn, cp, useDTLS)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	grant, err := s.be.Connect(cctx, creq, sess)
	cancel()
	if err != nil {
		s.st.refused.Add(1)
		return nil, &refusalError{503, formMessage(err.Error()), fmt.Errorf("%w: %v", ErrRefused, err)}
	}
	if err := sess.setGrant(grant); err != nil {
		s.be.Disconnected(sess, err)
		return nil, &refusalError{503, "server configuration error", err}
	}
	s.mu.Lock()
	if s.closed.Load() || s.cookies[ck.hash] != ck {
		s.mu.Unlock()
		err := fmt.Errorf("%w: cookie revoked or server closed during admission", ErrKilled)
		s.be.Disconnected(sess, err)
		return nil, &refusalError{401, "the session was cut while connecting", err}
	}
	ck.sess = sess
	s.sessions[sess.id] = sess
	s.wg.Add(1)
	s.mu.Unlock()
	s.st.connects.Add(1)
	go sess.run()
	return sess, nil
}

// connectHeaders are the X-CSTP and X-DTLS headers of the CONNECT answer.
func (ss *session) connectHeaders(cn *conn, base, mtu int, useDTLS bool, appID [appIDLen]byte) []httpwire.Field {
	cfg := &ss.srv.cfg
	g := ss.grant
	var h []httpwire.Field
	add := func(k, v string) { h = append(h, httpwire.Field{Name: k, Value: v}) }
	add("X-CSTP-Version", "1")
	add("X-CSTP-Server-Name", cfg.ServerName)
	add("X-CSTP-Address", g.Address.Addr().String())
	add("X-CSTP-Netmask", netmask(g.Address.Bits()))
	for _, d := range g.DNS {
		add("X-CSTP-DNS", d.String())
	}
	if g.DefaultDomain != "" {
		add("X-CSTP-Default-Domain", g.DefaultDomain)
	}
	for _, d := range g.SplitDNS {
		add("X-CSTP-Split-DNS", d)
	}
	if !g.FullTunnel {
		add("X-CSTP-Split-Include", route(g.Address.Masked()))
		for _, r := range g.Routes {
			if r.Masked() != g.Address.Masked() {
				add("X-CSTP-Split-Include", route(r))
			}
		}
	}
	for _, r := range g.ExcludeRoutes {
		add("X-CSTP-Split-Exclude", route(r))
	}
	add("X-CSTP-Tunnel-All-DNS", strconv.FormatBool(g.FullTunnel))
	add("X-CSTP-Keepalive", seconds(cfg.Keepalive))
	add("X-CSTP-DPD", seconds(cfg.DPD))
	if cfg.IdleTimeout > 0 {
		add("X-CSTP-Idle-Timeout", seconds(cfg.IdleTimeout))
	} else {
		add("X-CSTP-Idle-Timeout", "none")
	}
	if st := ss.sessionTimeout; st > 0 {
		left := st - ss.srv.now().Sub(ss.started)
		add("X-CSTP-Session-Timeout", seconds(st))
		add("X-CSTP-Session-Timeout-Remaining", seconds(left))
		add("X-CSTP-Lease-Duration", seconds(st))
	} else {
		add("X-CSTP-Session-Timeout", "none")
		add("X-CSTP-Lease-Duration", "none")
	}
	add("X-CSTP-Disconnected-Timeout", seconds(cfg.CookieLifetime))
	add("X-CSTP-Keep", "true")
	add("X-CSTP-Rekey-Method", "none")
	add("X-CSTP-Base-MTU", strconv.Itoa(base))
	add("X-CSTP-MTU", strconv.Itoa(mtu))
	if g.Banner != "" {
		add("X-CSTP-Banner", g.Banner)
	}
	if useDTLS {
		port := cfg.DTLSPort
		if port == 0 {
			port = int(cn.local.Port())
		}
		add("X-DTLS-Port", strconv.Itoa(port))
		add("X-DTLS-DPD", seconds(cfg.DPD))
		add("X-DTLS-Keepalive", seconds(cfg.Keepalive))
		add("X-DTLS-Rekey-Method", "none")
		add("X-DTLS-App-ID", hex.EncodeToString(appID[:]))
		add("X-DTLS-CipherSuite", "PSK-NEGOTIATE")
	}
	return h
}

func netmask(bits int) string {
	var b [4]byte
	for i := 0; i < bits && i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b).String()
}

func route(p netip.Prefix) string {
	p = p.Masked()
	if p.Addr().Is4() {
		return p.Addr().String() + "/" + netmask(p.Bits())
	}
	return p.String()
}

// readCSTP reads the session's frames from one TLS connection until it fails or the client leaves.
func (ss *session) readCSTP(t *transport) error {
	fr := cstp.NewFrameReader(t.br)
	defer ss.flushUplink()
	for {
		if !fr.Buffered() {
			ss.flushUplink() // the next read may wait: what the last one brought goes to the LAN now
		}
		typ, p, err := fr.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, cstp.ErrBadMagic) || errors.Is(err, cstp.ErrTooLong):
				return fmt.Errorf("%w: %v", ErrProtocol, err)
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
				if t.failure() != nil {
					return t.failure()
				}
				return fmt.Errorf("%w: connection closed", ErrTransport)
			default:
				if t.failure() != nil {
					return t.failure()
				}
				return fmt.Errorf("%w: %v", ErrTransport, err)
			}
		}
		now := ss.srv.now().UnixNano()
		ss.lastCSTPRx.Store(now)
		switch typ {
		case cstp.Data:
			ss.fromClient(p, false, now)
		case cstp.DPDRequest:
			ss.queueCtrl(cstp.DPDResp, p)
		case cstp.DPDResp, cstp.Keepalive:
		case cstp.Disconnect, cstp.Terminate:
			return fmt.Errorf("%w: %s", ErrClientExit, disconnectReason(p))
		default:
			ss.stats.unknown.Add(1)
		}
	}
}

// disconnectReason is the text of a DISCONNECT payload: a code byte, then the reason.
func disconnectReason(p []byte) string {
	if len(p) < 2 {
		return "no reason given"
	}
	r := []rune(string(p[1:min(len(p), 200)]))
	for i, c := range r {
		if c < 0x20 || c == 0x7f {
			r[i] = '.'
		}
	}
	return string(r)
}
