package anyconnect

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"toride/sslvpn/anyconnect/internal/authxml"
	"toride/sslvpn/anyconnect/internal/httpwire"
	"toride/sslvpn/shed"
)

// The login takes one or two forms:
//
//	POST init ─────────► main form: group list, user name and password as the group asks
//	   (group-select)     │  (a certificate-only group the client chose: no form, straight on)
//	POST auth-reply ─────►├─ group changed: main form of the new group
//	                      ├─ group asks for an OTP: challenge form (auth id="challenge", one password field)
//	POST auth-reply ─────►└─ Backend.Authenticate, once, with every factor
//	                           ok:   success document, webvpn cookie
//	                           fail: main form again with the backend's message
//
// Why a second form for the one-time password rather than one form with both: openconnect fills a
// challenge form from its own --token-mode=totp generator and prompts for it separately with
// --passwd-on-stdin; Cisco's clients show challenge forms as they do for a RADIUS challenge; and a
// certificate+OTP group asks only for the code. The backend still sees one attempt with every factor, so its
// lockout counts a login the way the OpenVPN side (password and OTP in one message) does, and a failure never
// tells which factor was wrong.
//
// The main form's handle is a form token that holds no state (formtoken.go). Between the main form and the
// challenge the login's state (user name, password) stays on the server, under a random handle the client
// copies back in <opaque> (and in the webvpncontext cookie): openconnect may open a new TLS connection between
// two forms. Those pending logins are bounded per connection (loginsPerConn), per source (loginsPerSource)
// and in total (Config.MaxPendingLogins); a new one always gets its place and the oldest makes room (package shed).

type stage int

const (
	stageMain stage = iota
	stageChallenge
)

// Bounds of the pending logins beside Config.MaxPendingLogins. One client has one login in progress; a few
// per connection leave room for a client that starts over. Per source, room for the users of one NAT typing
// their one-time passwords at the same time.
const (
	loginsPerConn   = 4
	loginsPerSource = 64
	// maxPasswordLen bounds what a pending login keeps of a password (a document may be 64 KiB).
	maxPasswordLen = 1024
)

// pendingLogin is a login between two forms: on the main form (not kept anywhere: its handle is a form
// token) or waiting for the answer to the challenge (kept in Server.pending under its random handle).
type pendingLogin struct {
	handle   string // the random handle once kept, "" before
	group    *group
	stage    stage
	user     string
	password string
	expires  time.Time
	conn     uint64 // the connection that kept it
	order    *shed.Entry[*pendingLogin]
}

type tlsCert struct {
	leaf   *x509.Certificate
	chains [][]*x509.Certificate
}

// handleAuth answers a POSTed config-auth document.
func (s *Server) handleAuth(ctx context.Context, cn *conn, req *httpwire.Request) *httpwire.Response {
	ax, err := authxml.Parse(req.Body)
	if err != nil {
		s.st.httpErrors.Add(1)
		return &httpwire.Response{Status: 400}
	}
	switch ax.Type {
	case authxml.TypeInit:
		// A new start (openconnect restarts with init after choosing a group) supersedes the login in progress.
		if h, ok := req.Cookie("webvpncontext"); ok {
			if p := s.takePending(h); p != nil {
				p.password = ""
			}
		}
		g, explicit := s.selectGroup(ax.GroupSelect, ax.GroupAccess, req.Path)
		return s.startLogin(ctx, cn, g, explicit, "", req, ax)
	case authxml.TypeAuthReply:
		return s.continueLogin(ctx, cn, req, ax)
	case authxml.TypeLogout:
		token := ax.SessionToken
		if token == "" {
			token, _ = req.Cookie("webvpn")
		}
		if ck := s.lookupCookie(token); ck != nil {
			s.dropCookie(ck, fmt.Errorf("%w: logout", ErrClientExit), "logged out")
		}
		return &httpwire.Response{Status: 200, Header: xmlHeader(), Body: authxml.Logout()}
	}
	s.st.httpErrors.Add(1)
	return &httpwire.Response{Status: 400}
}

// selectGroup picks the group a client asks for: by group-select (name, else label), by the path of the URL
// it was given (https://vpn.example.com/<group>), else the default. explicit says the client chose it.
func (s *Server) selectGroup(sel, access, path string) (*group, bool) {
	if g := s.groupByNameOrLabel(sel); g != nil {
		return g, true
	}
	if access != "" {
		if u, err := url.Parse(access); err == nil {
			if g := s.groupFromPath(u.Path); g != nil {
				return g, true
			}
		}
	}
	if g := s.groupFromPath(path); g != nil {
		return g, true
	}
	return s.defaultGroup(), false
}

func (s *Server) groupByNameOrLabel(v string) *group {
	if v == "" {
		return nil
	}
	if g := s.byName[strings.ToLower(v)]; g != nil {
		return g
	}
	for _, g := range s.groups {
		if strings.EqualFold(g.Label, v) {
			return g
		}
	}
	return nil
}

func (s *Server) groupFromPath(p string) *group {
	p = strings.Trim(p, "/")
	if p == "" || p == "auth" || strings.Contains(p, "/") {
		return nil
	}
	return s.byName[strings.ToLower(p)]
}

func (s *Server) defaultGroup() *group {
	if s.cfg.DefaultGroup != "" {
		return s.byName[strings.ToLower(s.cfg.DefaultGroup)]
	}
	return s.groups[0]
}

// startLogin begins a login to g: the main form, or, for a certificate group the client chose (or the only
// group), straight to the challenge or to the end. It keeps nothing unless a challenge follows.
func (s *Server) startLogin(ctx context.Context, cn *conn, g *group, explicit bool, errMsg string, req *httpwire.Request, ax ...*authxml.Request) *httpwire.Response {
	if g == nil {
		g = s.defaultGroup()
	}
	if !g.asksUser() && (explicit || len(s.groups) == 1) && errMsg == "" {
		var a *authxml.Request
		if len(ax) > 0 {
			a = ax[0]
		}
		return s.afterMain(ctx, cn, &pendingLogin{group: g}, req, a)
	}
	return s.mainForm(g, errMsg)
}

// keepPending keeps p, whose next form is the challenge, until its answer: under a new random handle if it
// has none. It never refuses; over a bound the oldest pending login of the connection, of the source or of
// the biggest source gives way.
func (s *Server) keepPending(cn *conn, p *pendingLogin) {
	if p.handle == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		p.handle = hex.EncodeToString(b[:])
	}
	now := s.now()
	p.expires, p.conn = now.Add(s.cfg.AuthTimeout), cn.id
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	// The connection's own list: what it still holds, oldest first.
	cn.logins = slices.DeleteFunc(cn.logins, func(h string) bool {
		q := s.pending[h]
		return q == nil || q.conn != cn.id || h == p.handle
	})
	for len(cn.logins) >= loginsPerConn {
		q := s.pending[cn.logins[0]]
		s.removePendingLocked(q)
		s.evictPending(q)
		cn.logins = cn.logins[1:]
	}
	s.pending[p.handle] = p
	p.order = s.pendingOrder.Push(cn.remote.Addr(), p, func(q *pendingLogin) {
		delete(s.pending, q.handle)
		s.evictPending(q)
	})
	cn.logins = append(cn.logins, p.handle)
}

// evictPending counts a pending login dropped to make room, and forgets its password at once.
func (s *Server) evictPending(p *pendingLogin) {
	if p != nil {
		p.password = ""
		s.st.loginsEvicted.Add(1)
	}
}

// removePendingLocked takes p out of the table; s.mu must be held.
func (s *Server) removePendingLocked(p *pendingLogin) {
	if p == nil {
		return
	}
	if s.pending[p.handle] == p {
		delete(s.pending, p.handle)
	}
	s.pendingOrder.Remove(p.order)
}

// takePending removes and returns the pending login a client continues, if it has not expired.
func (s *Server) takePending(handle string) *pendingLogin {
	if handle == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[handle]
	if p == nil {
		return nil
	}
	s.removePendingLocked(p)
	if s.now().After(p.expires) {
		p.password = ""
		return nil
	}
	return p
}

// resumeLogin returns the login an answered form continues: a new one for a main form's token still welcome,
// the pending one for a challenge's handle, else nil.
func (s *Server) resumeLogin(handle string) *pendingLogin {
	if g, expires, ok := s.openFormToken(handle); ok {
		if s.now().After(expires) {
			return nil
		}
		return &pendingLogin{group: g}
	}
	return s.takePending(handle)
}

// continueLogin takes an answered form further.
func (s *Server) continueLogin(ctx context.Context, cn *conn, req *httpwire.Request, ax *authxml.Request) *httpwire.Response {
	handle := ax.AuthHandle
	if handle == "" {
		handle, _ = req.Cookie("webvpncontext")
	}
	p := s.resumeLogin(handle)
	if p == nil {
		s.st.loginsExpired.Add(1)
		g, explicit := s.selectGroup(ax.GroupSelect, ax.GroupAccess, req.Path)
		return s.startLogin(ctx, cn, g, explicit, "Your login has expired. Please log in again.", req)
	}
	if g := s.groupByNameOrLabel(ax.GroupSelect); g != nil && g != p.group {
		// The user picked another profile in the list: its own form.
		p.password = ""
		return s.startLogin(ctx, cn, g, true, "", req, ax)
	}
	switch p.stage {
	case stageMain:
		g := p.group
		if g.asksUser() {
			user, _ := ax.AuthValue("username")
			p.user = strings.TrimSpace(user)
			if p.user == "" || !printable(p.user) {
				return s.mainForm(g, "Enter your user name.")
			}
		}
		if g.Password {
			pass, ok := ax.AuthValue("password")
			if !ok || pass == "" {
				return s.mainForm(g, "Enter your password.")
			}
			if len(pass) > maxPasswordLen {
				return s.mainForm(g, fmt.Sprintf("The password is longer than %d characters.", maxPasswordLen))
			}
			p.password = pass
		}
		return s.afterMain(ctx, cn, p, req, ax)
	default:
		otp, ok := ax.AuthValue("answer", "secondary_password", "password", "otp")
		otp = strings.TrimSpace(otp)
		if !ok || otp == "" {
			s.keepPending(cn, p)
			return s.challengeForm(p, "Enter the one-time password.")
		}
		return s.finishLogin(ctx, cn, p, otp, true, req, ax)
	}
}

// afterMain goes on once the main form's factors are in: the challenge form, or the end.
func (s *Server) afterMain(ctx context.Context, cn *conn, p *pendingLogin, req *httpwire.Request, ax *authxml.Request) *httpwire.Response {
	if p.group.Certificate && cn.verifiedCert() == nil {
		s.st.loginsFailed.Add(1)
		return s.restart(p.group, fmt.Sprintf("The profile %s requires a client certificate, and none was presented.", p.group.Label))
	}
	if p.group.OTP {
		p.stage = stageChallenge
		s.keepPending(cn, p)
		return s.challengeForm(p, "")
	}
	return s.finishLogin(ctx, cn, p, "", false, req, ax)
}

// finishLogin asks the backend and answers with a cookie or the login form again.
func (s *Server) finishLogin(ctx context.Context, cn *conn, p *pendingLogin, otp string, hasOTP bool, req *httpwire.Request, ax *authxml.Request) *httpwire.Response {
	g := p.group
	ar := &AuthRequest{Remote: cn.remote, Group: g.Name, Username: p.user, Password: p.password, OTP: otp, HasOTP: hasOTP,
		UserAgent: req.Get("User-Agent")}
	p.password = ""
	if c := cn.verifiedCert(); c != nil {
		ar.Certificate, ar.VerifiedChains = c.leaf, c.chains
	}
	if ax != nil {
		ar.ClientVersion, ar.DeviceID = ax.Version, ax.DeviceID
	}
	if g.Certificate && ar.Certificate == nil {
		s.st.loginsFailed.Add(1)
		return s.restart(g, fmt.Sprintf("The profile %s requires a client certificate, and none was presented.", g.Label))
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	ident, err := s.be.Authenticate(actx, ar)
	cancel()
	if err == nil && ident == nil {
		err = fmt.Errorf("%w: the backend returned no identity", ErrConfig)
	}
	if err != nil {
		s.st.loginsFailed.Add(1)
		return s.restart(g, formMessage(err.Error()))
	}
	if ident.Certificate == nil {
		ident.Certificate = ar.Certificate
	}
	token, ck := s.issueCookie(ident, g, cn.remote)
	s.st.loginsOK.Add(1)
	cn.loggedIn()
	doc := &authxml.Success{SessionID: fmt.Sprint(ck.serial), SessionToken: token, TunnelGroup: g.Name,
		ServerCertHash: s.certHash, Message: "Success"}
	hdr := append(xmlHeader(),
		httpwire.Field{Name: "Set-Cookie", Value: "webvpncontext=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/; Secure; HttpOnly"},
		httpwire.Field{Name: "Set-Cookie", Value: fmt.Sprintf("webvpn=%s; Max-Age=%d; path=/; Secure; HttpOnly", token, int(s.cfg.CookieLifetime/time.Second))})
	if g.profileURI != "" {
		doc.Profile = &authxml.Profile{URI: g.profileURI, SHA1: g.profileSHA1}
		// NetworkManager's openconnect reads the profile's location from this cookie.
		hdr = append(hdr, httpwire.Field{Name: "Set-Cookie", Value: fmt.Sprintf("webvpnc=bu:/&p:t&iu:1/&sh:%s&fu:profiles%%2F%s.xml&fh:%s; path=/; Secure; HttpOnly",
			s.certHash, g.Name, g.profileSHA1)})
	}
	return &httpwire.Response{Status: 200, Header: hdr, Body: doc.Render()}
}

// restart begins a new login to g whose form carries msg.
func (s *Server) restart(g *group, msg string) *httpwire.Response { return s.mainForm(g, msg) }

// mainForm is g's first form, under a form token: it keeps nothing on the server.
func (s *Server) mainForm(g *group, errMsg string) *httpwire.Response {
	handle := s.formToken(g, s.now().Add(s.cfg.AuthTimeout))
	f := &authxml.Form{ID: "main", Title: s.cfg.ServerName, Banner: s.cfg.LoginBanner, Error: errMsg, Action: "/",
		Opaque: authxml.Opaque{TunnelGroup: g.Name, GroupAlias: g.Label, AuthHandle: handle}}
	switch {
	case g.Password:
		f.Message = "Please enter your username and password."
	case g.asksUser():
		f.Message = "Please enter your username."
	default:
		f.Message = "Please choose your connection profile."
	}
	if g.asksUser() {
		f.Inputs = append(f.Inputs, authxml.Input{Type: "text", Name: "username", Label: "Username:"})
	}
	if g.Password {
		f.Inputs = append(f.Inputs, authxml.Input{Type: "password", Name: "password", Label: "Password:"})
	}
	if len(s.groups) > 1 {
		// The chosen group comes first as well as selected: some clients take the first entry.
		f.Groups = append(f.Groups, authxml.Option{Name: g.Name, Label: g.Label, Selected: true})
		for _, o := range s.groups {
			if o != g {
				f.Groups = append(f.Groups, authxml.Option{Name: o.Name, Label: o.Label})
			}
		}
	}
	return s.formResponse(handle, f)
}

func (s *Server) challengeForm(p *pendingLogin, errMsg string) *httpwire.Response {
	f := &authxml.Form{ID: "challenge", Title: s.cfg.ServerName, Error: errMsg, Action: "/",
		Message: "Enter the one-time password from your authenticator.",
		Inputs:  []authxml.Input{{Type: "password", Name: "answer", Label: "One-time password:"}},
		Opaque:  authxml.Opaque{TunnelGroup: p.group.Name, GroupAlias: p.group.Label, AuthHandle: p.handle}}
	return s.formResponse(p.handle, f)
}

func (s *Server) formResponse(handle string, f *authxml.Form) *httpwire.Response {
	hdr := append(xmlHeader(), httpwire.Field{Name: "Set-Cookie",
		Value: fmt.Sprintf("webvpncontext=%s; Max-Age=%d; path=/; Secure; HttpOnly", handle, int(s.cfg.AuthTimeout/time.Second))})
	return &httpwire.Response{Status: 200, Header: hdr, Body: f.Render()}
}

// formMessage makes a backend's error text fit for a form: one line of printable text, bounded.
func formMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300]
	}
	if s == "" {
		s = "Login failed."
	}
	return s
}

func printable(s string) bool {
	if len(s) > 256 {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
