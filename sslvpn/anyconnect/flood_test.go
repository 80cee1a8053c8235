package anyconnect_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/anyconnect/internal/authxml"
)

// A stranger asking for login forms, as fast as a kept-alive connection allows and from many sources, makes
// the server keep nothing: every form is answered, and a user logs in at once afterwards.
func TestFormFloodKeepsNothing(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{otpGroup}}) // default bounds
	get := rawRequest("GET", "/", nil)
	init := rawRequest("POST", "/", (&authxml.Request{Type: authxml.TypeInit, Version: "v9.01"}).Marshal())

	start := time.Now()
	if ok := e.client(nil).pipeline(6000, get, `<auth id="main">`); ok != 6000 {
		t.Fatalf("%d of 6000 GET / on one connection answered with the login form", ok)
	}
	t.Logf("6000 GET / on one connection: %v", time.Since(start).Round(time.Millisecond))
	if ok := e.clientFrom("127.0.0.2").pipeline(3000, init, `<auth id="main">`); ok != 3000 {
		t.Fatalf("%d of 3000 inits from one source answered with the login form", ok)
	}
	for i := 0; i < 40; i++ {
		if ok := e.clientFrom(fmt.Sprintf("127.0.1.%d", i+1)).pipeline(100, init, `<auth id="main">`); ok != 100 {
			t.Fatalf("source %d: %d of 100 inits answered", i, ok)
		}
	}
	if st := e.srv.Stats(); st.PendingLogins != 0 || st.Cookies != 0 || st.LoginsEvicted != 0 {
		t.Fatalf("forms asked for left state behind: %+v", st)
	}

	start = time.Now()
	c := e.client(nil)
	token := c.login("", "alice", "alice-pw", e.be.otp)
	if tn, resp := c.connect(token, false); tn == nil {
		t.Fatalf("CONNECT after the flood: %s", resp.Status)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("login and CONNECT after the flood took %v", d)
	}
}

// Logins that did keep state (answered main forms waiting for their one-time password) stay within their
// bounds per connection, per source and in total; every one is answered, the oldest give way, and a user's
// login in progress outlives a flood from other sources.
func TestPendingLoginBounds(t *testing.T) {
	const max = 128 // per source 64, per connection 4
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{otpGroup}, MaxPendingLogins: max})

	user := e.client(nil) // 127.0.0.1
	d := user.init("")
	d = user.reply(d, "", "username", "alice", "password", "alice-pw")
	if d.Auth.ID != "challenge" {
		t.Fatalf("user: %+v", d.Auth)
	}

	// The stranger answers a main form over and over (a form token can be answered more than once).
	form := e.client(nil).init("")
	answer := rawRequest("POST", "/", (&authxml.Request{Type: authxml.TypeAuthReply, AuthHandle: form.Handle,
		Auth: []authxml.Field{{Name: "username", Value: "mallory"}, {Name: "password", Value: "x"}}}).Marshal())
	created := 0
	flood := func(src string, conns, each int) {
		t.Helper()
		for i := 0; i < conns; i++ {
			if ok := e.clientFrom(src).pipeline(each, answer, `<auth id="challenge">`); ok != each {
				t.Fatalf("%s: %d of %d answers to the main form got the challenge", src, ok, each)
			}
			created += each
		}
	}
	check := func(what string, pending int) {
		t.Helper()
		st := e.srv.Stats()
		if st.PendingLogins != pending || st.LoginsEvicted != uint64(created+1-pending) {
			t.Fatalf("after %s: %d pending logins (want %d), %d evicted (want %d)", what, st.PendingLogins, pending,
				st.LoginsEvicted, created+1-pending)
		}
	}
	flood("127.0.0.2", 1, 500)
	check("500 on one connection", 1+4)
	flood("127.0.0.3", 30, 10)
	check("300 from one source on 30 connections", 1+4+64)
	for i := 0; i < 8; i++ {
		flood(fmt.Sprintf("127.0.1.%d", i+1), 17, 5)
	}
	check("680 from 8 sources", max)

	// The user, who started before the floods, finishes; so does one who starts now.
	if d = user.reply(d, "", "answer", e.be.otp); d.Auth.ID != "success" {
		t.Fatalf("the user's login did not outlive the flood: %+v", d.Auth)
	}
	if token := e.client(nil).login("", "bob", "bob-pw", e.be.otp); token == "" {
		t.Fatal("no cookie")
	}
	if n := e.be.authCount(); n != 2 {
		t.Errorf("Authenticate called %d times, want 2 (the flood never answered a challenge)", n)
	}
}

// A client looping on successful logins without connecting sheds its own oldest cookies, and cookies in total
// stay bounded; nobody's login is refused.
func TestUnusedCookieBounds(t *testing.T) {
	const maxPending = 32 // unused cookies: 128 in total, 64 per source
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}, MaxPendingLogins: maxPending})
	loop := func(src string, n int) (first, last string) {
		t.Helper()
		c := e.clientFrom(src)
		for i := 0; i < n; i++ {
			d := c.init("")
			d = c.reply(d, "", "username", "alice", "password", "alice-pw")
			if d.Auth.ID != "success" {
				t.Fatalf("%s: login %d: %+v", src, i, d.Auth)
			}
			if i == 0 {
				first = d.Token
			}
			last = d.Token
		}
		return first, last
	}
	first, last := loop("127.0.0.2", 100)
	if st := e.srv.Stats(); st.Cookies != 64 || st.CookiesEvicted != 36 {
		t.Fatalf("after 100 logins from one source: %d cookies, %d evicted; want 64, 36", st.Cookies, st.CookiesEvicted)
	}
	for i := 0; i < 3; i++ {
		loop(fmt.Sprintf("127.0.1.%d", i+1), 64)
	}
	if st := e.srv.Stats(); st.Cookies != 4*maxPending || st.CookiesEvicted != 36+3*64+64-4*maxPending {
		t.Fatalf("after 292 logins from four sources: %d cookies, %d evicted", st.Cookies, st.CookiesEvicted)
	}
	c := e.client(nil)
	if tn, resp := c.connect(c.login("", "bob", "bob-pw", ""), false); tn == nil {
		t.Fatalf("a user's CONNECT after the flood: %s", resp.Status)
	}
	c = e.client(nil)
	if tn, resp := c.connect(first, false); tn != nil || resp.StatusCode != 401 {
		t.Errorf("an evicted cookie: %v", resp.Status)
	}
	_ = last
}

// The main form's handle is sealed: a client cannot move its expiry or its group.
func TestFormTokenSealed(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup, otpGroup}})
	c := e.client(nil)
	d := c.init("staff")
	if len(d.Handle) != 54 {
		t.Fatalf("handle %q", d.Handle)
	}
	for i := 0; i < len(d.Handle); i++ {
		forged := []byte(d.Handle)
		forged[i] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", forged[i])+1)%16]
		dd := &doc{Handle: string(forged)}
		c.cookies = map[string]string{}
		if got := c.reply(dd, "", "username", "alice", "password", "alice-pw"); got.Auth.ID == "success" ||
			!strings.Contains(got.Auth.Error, "expired") {
			t.Fatalf("a handle changed at digit %d was taken: %+v", i, got.Auth)
		}
	}
	if e.be.authCount() != 0 {
		t.Fatalf("Authenticate called %d times with forged handles", e.be.authCount())
	}
	if got := c.reply(d, "", "username", "alice", "password", "alice-pw"); got.Auth.ID != "success" {
		t.Fatalf("the real handle: %+v", got.Auth)
	}
}
