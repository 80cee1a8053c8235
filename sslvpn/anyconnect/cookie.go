package anyconnect

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"

	"toride/sslvpn/anyconnect/internal/httpwire"
)

// A cookie (the webvpn session token) is the bearer credential a login earns: 32 random bytes, sent as 64
// upper-case hex digits. The server keeps only its SHA-256, so neither a memory dump nor the status API yields
// a usable token.
//
// Lifecycle:
//
//	issued ── first CONNECT within CookieLifetime ──► bound to a session ── session ends (any reason) ──► gone
//	   └─ CookieLifetime passes ──► gone                  (while the session waits for a reconnect, the session's
//	                                                       own timer is the cookie's lifetime)
//
// A session's end always deletes its cookie, so a client cut by the server, timed out or logged out cannot
// come back with it.
//
// In a group that requires a client certificate the cookie alone is not enough: every CONNECT with it, the first
// and each reconnect, must come over a TLS connection whose verified certificate is the one the login used (the
// same SHA-256 of the DER), so a cookie that leaked is no use without the certificate's key.
type cookie struct {
	hash    [32]byte
	serial  uint64
	ident   *Identity
	group   *group
	certSum [32]byte  // SHA-256 of the login's certificate, for a group that requires one
	expires time.Time // for a cookie not yet bound to a session

	// sem serializes CONNECTs with this cookie, so one login never makes two sessions.
	sem  chan struct{}
	sess *session // guarded by Server.mu
}

const tokenLen = 32

// cookiesPerSource bounds the cookies of one source waiting for their first CONNECT (the total bound is
// 4 × Config.MaxPendingLogins). A client connects at once after its login; the room is for a NAT's users.
const cookiesPerSource = 64

// issueCookie makes a cookie for a completed login from remote.
func (s *Server) issueCookie(ident *Identity, g *group, remote netip.AddrPort) (string, *cookie) {
	var raw [tokenLen]byte
	_, _ = rand.Read(raw[:])
	token := strings.ToUpper(hex.EncodeToString(raw[:]))
	ck := &cookie{sem: make(chan struct{}, 1), hash: sha256.Sum256([]byte(token)), ident: ident, group: g, expires: s.now().Add(s.cfg.CookieLifetime)}
	if g.Certificate && ident.Certificate != nil {
		ck.certSum = sha256.Sum256(ident.Certificate.Raw)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(s.now())
	s.nextID++
	ck.serial = s.nextID
	s.cookies[ck.hash] = ck
	// Cookies waiting for their first CONNECT are bounded like pending logins: each costs a successful login,
	// but a client looping on logins must not grow the table, nor shut out the logins of others. The newest
	// is never refused; an old unused cookie gives way (package shed).
	s.unusedCookies.Push(remote.Addr(), ck, func(old *cookie) {
		delete(s.cookies, old.hash)
		s.st.cookiesEvicted.Add(1)
	})
	return token, ck
}

// unusedCookieGone tells the order of unused cookies that ck was used (bound to a session) or is gone
// (revoked, logged out, expired and swept); s.mu must be held.
func (s *Server) unusedCookieGone(ck *cookie) bool { return ck.sess != nil || s.cookies[ck.hash] != ck }

func (ck *cookie) connectSem() chan struct{} { return ck.sem }

// presentedWith reports whether a CONNECT over cn may use the cookie: in a group that requires a certificate, cn
// must carry the verified certificate of the login.
func (ck *cookie) presentedWith(cn *conn) bool {
	if !ck.group.Certificate {
		return true
	}
	c := cn.verifiedCert()
	if c == nil || ck.ident.Certificate == nil {
		return false
	}
	sum := sha256.Sum256(c.leaf.Raw)
	return subtle.ConstantTimeCompare(sum[:], ck.certSum[:]) == 1
}

// lookupCookie returns the valid cookie for token, or nil.
func (s *Server) lookupCookie(token string) *cookie {
	if len(token) != 2*tokenLen {
		return nil
	}
	h := sha256.Sum256([]byte(strings.ToUpper(token)))
	s.mu.Lock()
	defer s.mu.Unlock()
	ck := s.cookies[h]
	if ck == nil {
		return nil
	}
	if ck.sess == nil && s.now().After(ck.expires) {
		delete(s.cookies, h)
		return nil
	}
	return ck
}

// cookieOf returns the valid cookie a request carries, or nil.
func (s *Server) cookieOf(req *httpwire.Request) *cookie {
	token, ok := req.Cookie("webvpn")
	if !ok {
		return nil
	}
	return s.lookupCookie(token)
}

// dropCookie invalidates a cookie and ends its session, if any.
func (s *Server) dropCookie(ck *cookie, why error, reason string) {
	s.mu.Lock()
	if s.cookies[ck.hash] == ck {
		delete(s.cookies, ck.hash)
	}
	sess := ck.sess
	s.mu.Unlock()
	if sess != nil {
		sess.end(why, reason)
	}
}
