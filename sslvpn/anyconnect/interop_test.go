package anyconnect_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/internal/enginetest"
	"toride/tests/lab"
	"toride/tests/occlient"
)

const labPort = 443

// interop is one real-client test: the engine in this process, its sockets in a server namespace; the stock
// openconnect binary in a client namespace.
type interop struct {
	t      testing.TB
	lab    *enginetest.Lab
	pki    *testPKI
	be     *testBackend
	srv    *anyconnect.Server
	served *enginetest.Served
}

func newInterop(t *testing.T, cfg anyconnect.Config) *interop {
	t.Helper()
	return newInteropPKI(t, nil, cfg)
}

// newInteropPKI is newInterop with the test's own PKI (nil for a new one).
func newInteropPKI(t *testing.T, pki *testPKI, cfg anyconnect.Config) *interop {
	t.Helper()
	return newInteropWith(t, pki, cfg, nil)
}

// newInteropWith is newInteropPKI with a hook that adjusts the server before it serves.
func newInteropWith(t *testing.T, pki *testPKI, cfg anyconnect.Config, adjust func(*anyconnect.Server)) *interop {
	t.Helper()
	e := newInteropLab(t, pki, "openconnect", "ping", "nft")
	if cfg.TLS == nil {
		cfg.TLS = e.pki.serverTLS()
	}
	var err error
	if e.srv, err = anyconnect.NewServer(cfg, e.be); err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(e.srv)
	}
	e.recordSeeds()
	e.serve()
	return e
}

// newInteropLab is the lab and the PKI (nil for a new one), without a server yet.
func newInteropLab(t testing.TB, pki *testPKI, tools ...string) *interop {
	t.Helper()
	if pki == nil {
		pki = newTestPKI(t, enginetest.ServerIP)
	}
	return &interop{t: t, lab: enginetest.NewLab(t, tools...), pki: pki, be: newTestBackend()}
}

// serve opens TCP and UDP 443 in the server namespace and serves them.
func (e *interop) serve() {
	e.t.Helper()
	e.served = enginetest.Serve(e.t, e.srv.Close, anyconnect.ErrClosed, 15*time.Second)
	addr := fmt.Sprintf("%s:%d", enginetest.ServerIP, labPort)
	e.served.ListenStream(e.lab.Server, addr, func(ctx context.Context, c net.Conn) error {
		err := e.srv.ServeConn(ctx, c)
		e.t.Logf("ServeConn %s: %v", c.RemoteAddr(), err)
		return err
	})
	e.served.ListenPackets(e.lab.Server, addr, e.srv.ServeDTLS)
}

// cutConnections closes every accepted TCP connection, as a broken network would.
func (e *interop) cutConnections() { e.served.CloseConns(true) }

// client is a running openconnect.
type client struct {
	*occlient.Client
	e *interop
}

// openconnect starts the stock client against the engine, the server's key pinned, with args; stdin feeds
// its password prompts (one line each). Unless it only logs in (--authenticate), the client prints its HTTP
// traffic, for the tests that read the forms it got.
func (e *interop) openconnect(stdin string, args ...string) *client {
	e.t.Helper()
	if !slices.Contains(args, "--authenticate") {
		args = append(args, "--dump-http-traffic")
	}
	url := fmt.Sprintf("https://%s/", enginetest.ServerIP)
	c := occlient.Start(e.t, e.lab.Client, occlient.Options{Server: url, ServerCert: e.pki.Pin, Stdin: stdin, Args: args})
	return &client{Client: c, e: e}
}

// waitOutput waits up to d for the client to print substr.
func (c *client) waitOutput(substr string, d time.Duration) {
	c.e.t.Helper()
	if err := c.WaitLog(lab.Within(c.e.t, d), substr); err != nil {
		c.e.t.Fatal(err)
	}
}

// waitConnected waits up to d for the script's connect call and returns its environment.
func (c *client) waitConnected(d time.Duration) map[string]string {
	c.e.t.Helper()
	env, err := c.WaitConnected(lab.Within(c.e.t, d))
	if err != nil {
		c.e.t.Fatal(err)
	}
	return env
}

// ping pings addr from the client namespace until it answers (bounded), and fails the test otherwise.
func (e *interop) ping(addr string, d time.Duration) {
	e.t.Helper()
	err := lab.WaitFor(lab.Within(e.t, d), 100*time.Millisecond, func() error {
		_, err := e.lab.Client.Run("ping", "-n", "-q", "-c", "1", "-W", "1", addr)
		return err
	})
	if err != nil {
		e.t.Fatalf("ping %s: %v", addr, err)
	}
}
