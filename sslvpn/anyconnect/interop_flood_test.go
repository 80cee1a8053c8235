package anyconnect_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/anyconnect/internal/authxml"
	"toride/sslvpn/internal/enginetest"
	"toride/tests/lab"
)

// TestInteropLoginDuringFormFlood: the stock openconnect logs in with a password and a one-time password while,
// from another namespace and eight addresses, a flood asks for login forms (GET /, POST init) and answers main
// forms (which do keep a pending login each) as fast as its kept-alive connections allow. The login succeeds
// during the flood and the pending logins stay within the per-source bounds.
func TestInteropLoginDuringFormFlood(t *testing.T) {
	e := newInterop(t, anyconnect.Config{Groups: []anyconnect.Group{{Name: "staff", Password: true, OTP: true}}})
	floodNS := e.lab.Namespace("flood")
	e.lab.Link(e.lab.Server, "eth1", "10.99.1.1/24", floodNS, "eth0", "10.99.1.2/24")
	const sources = 8
	for i := 1; i < sources; i++ {
		floodNS.AddAddr("eth0", fmt.Sprintf("10.99.1.%d/24", 2+i))
	}
	floodNS.AddRoute(enginetest.ServerIP+"/32", "10.99.1.1")

	// Bounded in time (the context) and in count (maxRequests).
	const maxRequests = 2_000_000
	ctx, stop := context.WithTimeout(context.Background(), 60*time.Second)
	defer stop()
	var answered atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for i := 0; i < sources; i++ {
		wg.Add(1)
		go func(src string) {
			defer wg.Done()
			floodForms(ctx, floodNS, src, &answered, maxRequests/sources)
		}(fmt.Sprintf("10.99.1.%d", 2+i))
	}
	// Let the flood run first: the old engine's table of 4096 logins is full well before this.
	_ = lab.WaitFor(lab.Within(t, 20*time.Second), 20*time.Millisecond, func() error {
		if answered.Load() < 20000 {
			return fmt.Errorf("%d flood requests answered", answered.Load())
		}
		return nil
	})
	before := answered.Load()
	c := e.openconnect("alice-pw\n"+e.be.otp+"\n", "-u", "alice", "--passwd-on-stdin")
	c.waitConnected(20 * time.Second)
	e.ping("10.8.0.1", 10*time.Second)
	login := time.Since(c.Started)
	during := answered.Load() - before
	st := e.srv.Stats()
	stop()
	wg.Wait()
	t.Logf("login to ping %v while the flood had %d requests answered (%d before the client started, %d in all); stats %+v",
		login.Round(time.Millisecond), during, before, answered.Load(), st)
	if during < 1000 {
		t.Errorf("the flood hardly ran during the login: %d requests answered", during)
	}
	if n := e.be.authCount(); n != 1 {
		t.Errorf("Authenticate called %d times, want 1", n)
	}
	// The flood's sources hold at most 64 pending logins each; the user's own was one more, now done.
	if st.PendingLogins > sources*64 || st.LoginsOK != 1 || st.Cookies != 1 {
		t.Errorf("tables during the flood: %+v", st)
	}
}

var handleInBody = regexp.MustCompile(`<aggauth-handle>([0-9a-f]+)</aggauth-handle>`)

// floodForms floods the server from src in ns until ctx ends or max requests were answered: on one kept-alive
// connection at a time (a new one when the server closes it), batches of GET /, of POST init, and of answers
// to a main form with a made-up user.
func floodForms(ctx context.Context, ns *lab.Netns, src string, answered *atomic.Int64, max int64) {
	get := rawRequest("GET", "/", nil)
	init := rawRequest("POST", "/", (&authxml.Request{Type: authxml.TypeInit, Version: "v9.01"}).Marshal())
	var done int64
	for ctx.Err() == nil && done < max {
		var raw net.Conn
		err := ns.Do(func() (err error) {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			raw, err = d.DialContext(ctx, "tcp4", fmt.Sprintf("%s:%d", enginetest.ServerIP, labPort))
			return err
		})
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		stopClose := context.AfterFunc(ctx, func() { conn.Close() })
		br := bufio.NewReader(conn)
		for ctx.Err() == nil && done < max {
			deadline := time.Now().Add(10 * time.Second)
			_, n1, _ := pipeline(conn, br, 500, get, "", deadline)
			_, n2, last := pipeline(conn, br, 500, init, "", deadline)
			n3 := 0
			if m := handleInBody.FindSubmatch(last); m != nil {
				answer := rawRequest("POST", "/", (&authxml.Request{Type: authxml.TypeAuthReply, AuthHandle: string(m[1]),
					Auth: []authxml.Field{{Name: "username", Value: "mallory"}, {Name: "password", Value: "guess"}}}).Marshal())
				_, n3, _ = pipeline(conn, br, 50, answer, "", deadline)
			}
			n := int64(n1 + n2 + n3)
			done += n
			answered.Add(n)
			if n1+n2+n3 < 1050 {
				break // the server closed the connection
			}
		}
		stopClose()
		conn.Close()
	}
}
