package anyconnect_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
)

// loginCountingConn is a served connection with the port demultiplexer's Authenticated method.
type loginCountingConn struct {
	net.Conn
	logins atomic.Int32
}

func (c *loginCountingConn) Authenticated() { c.logins.Add(1) }

// A connection tells its listener when its client has logged in (a successful login on it, or a CONNECT that
// opens a tunnel with a valid cookie), never before: the listener stops counting it among those awaiting login.
func TestServeConnReportsLogin(t *testing.T) {
	e := newEngine(t, anyconnect.Config{Groups: []anyconnect.Group{pwGroup}})
	served := make(chan *loginCountingConn, 4)
	ln := e.served.ListenStream(nil, "127.0.0.1:0", func(ctx context.Context, c net.Conn) error {
		lc := &loginCountingConn{Conn: c}
		served <- lc
		return e.srv.ServeConn(ctx, lc)
	})
	e.addr = ln.Addr().String() // the test's clients dial this listener
	next := func() *loginCountingConn {
		select {
		case c := <-served:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection served")
		}
		return nil
	}

	c := e.client(nil)
	sc := next()
	d := c.init("staff")
	d = c.reply(d, "staff", "username", "alice", "password", "wrong")
	if d.Auth.ID == "success" {
		t.Fatal("a wrong password logged in")
	}
	if n := sc.logins.Load(); n != 0 {
		t.Fatalf("Authenticated called %d times before any login succeeded", n)
	}
	token := c.login("staff", "alice", "alice-pw", "")
	if n := sc.logins.Load(); n != 1 {
		t.Fatalf("Authenticated called %d times after a login, want once", n)
	}

	// The tunnel, on a connection of its own, as openconnect opens it.
	c2 := e.client(nil)
	tc := next()
	tn, resp := c2.connect(token, false)
	if tn == nil {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	if n := tc.logins.Load(); n != 1 {
		t.Fatalf("Authenticated called %d times on the tunnel's connection, want once", n)
	}
}
