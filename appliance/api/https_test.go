package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
	"toride/tests/lab"
)

// startAPIHTTPS runs the HTTPS API component on a free loopback port with limits, answering 200 to a request
// with the key "secret"; it returns the address.
func startAPIHTTPS(t *testing.T, limits httpsLimits) string {
	t.Helper()
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	sum := sha256.Sum256([]byte("secret"))
	cfg := &config.Config{}
	cfg.System.HostName = "box"
	cfg.API.HTTPS.ListenAddress = netip.MustParseAddr("127.0.0.1")
	cfg.API.HTTPS.Port = port
	cfg.API.Keys = map[string]*config.APIKey{"admin": {KeyHash: config.Secret(hex.EncodeToString(sum[:]))}}
	a := &HTTPSListener{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		stateDir: t.TempDir(), health: health.New(), log: slog.New(slog.DiscardHandler), limits: limits}
	if err := a.Apply(context.Background(), nil, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return netip.AddrPortFrom(cfg.API.HTTPS.ListenAddress, uint16(port)).String()
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports how long until the server closed c (a read gets EOF or a reset), at most limit.
func closedWithin(c net.Conn, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return time.Since(start), false
		}
		return time.Since(start), true
	}
}

// authorized makes one request with the key, from src, and returns the status.
func authorized(t *testing.T, src, addr string) (int, error) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+addr+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestAPIHTTPSCutsSlowClients: a client that never starts TLS, and one that trickles its request headers after
// the handshake (slowloris), are cut within the header timeout; a request without a key does not keep its
// connection.
func TestAPIHTTPSCutsSlowClients(t *testing.T) {
	addr := startAPIHTTPS(t, httpsLimits{header: 300 * time.Millisecond, read: time.Second, write: time.Second, idle: time.Second})

	silent := dialFrom(t, "127.0.0.1", addr)
	if took, closed := closedWithin(silent, 3*time.Second); !closed || took > 1500*time.Millisecond {
		t.Fatalf("a client that never starts TLS: closed=%v after %v, want closed within the 300 ms header timeout", closed, took)
	}

	slow := tls.Client(dialFrom(t, "127.0.0.1", addr), &tls.Config{InsecureSkipVerify: true})
	if err := slow.Handshake(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		took, _ := closedWithin(slow, 5*time.Second)
		cut <- took
	}()
	io.WriteString(slow, "GET /api/v1/status HTTP/1.1\r\nHost: box\r\n")
	var took time.Duration
trickle:
	for {
		select {
		case took = <-cut:
			break trickle
		case <-time.After(100 * time.Millisecond):
			if _, err := io.WriteString(slow, "X-Slow: a\r\n"); err != nil {
				took = <-cut
				break trickle
			}
		}
	}
	if total := time.Since(start); total > 1500*time.Millisecond {
		t.Fatalf("a client trickling headers kept its connection %v (read side: %v), want it cut within the 300 ms header timeout", total, took)
	}

	// No key: answered 401, and the connection closed.
	anon := tls.Client(dialFrom(t, "127.0.0.1", addr), &tls.Config{InsecureSkipVerify: true})
	io.WriteString(anon, "GET /api/v1/status HTTP/1.1\r\nHost: box\r\n\r\n")
	anon.SetReadDeadline(time.Now().Add(3 * time.Second))
	answer, err := io.ReadAll(anon)
	if len(answer) < 12 || string(answer[9:12]) != "401" || err != nil {
		t.Fatalf("a request without a key: %q %v, want a 401 and the connection closed", answer, err)
	}
}

// TestAPIHTTPSCapsConnections: a source over its bound has its oldest connections closed, keeping its newest,
// and cannot take the server's slots: an authenticated request from another address still gets its answer.
// (Until the shedding policy was shared, its newest were closed at once and its oldest kept.)
func TestAPIHTTPSCapsConnections(t *testing.T) {
	addr := startAPIHTTPS(t, httpsLimits{header: 10 * time.Second, conns: 6, perSource: 2})
	var held []net.Conn
	for range 50 {
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	var open []int
	for i, c := range held {
		if _, closed := closedWithin(c, 200*time.Millisecond); !closed {
			open = append(open, i)
		}
	}
	if !slices.Equal(open, []int{48, 49}) {
		t.Fatalf("connections %v of 50 from one source stayed open, want its newest 2", open)
	}
	if code, err := authorized(t, "127.0.0.2", addr); err != nil || code != http.StatusOK {
		t.Fatalf("an authenticated request while a source floods: %d %v", code, err)
	}
	// The flooding source itself gets in too.
	if code, err := authorized(t, "127.0.0.1", addr); err != nil || code != http.StatusOK {
		t.Fatalf("a request from the flooding source: %d %v", code, err)
	}
}

// TestAPIHTTPSFloodFromManySourcesSparesTheAdmin: connections that never start TLS, from more sources than the
// total bound holds at the per-source bound, each reconnecting as soon as it is closed, keep the bound full and
// churning; an admin from another address still gets every answer, on new connections, each slow to start its
// TLS handshake as over a long path, and on a kept-alive one. With the default bounds, against as many sources as
// the hostile-input suite floods from.
func TestAPIHTTPSFloodFromManySourcesSparesTheAdmin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  httpsLimits
		sources int
	}{
		{"small bounds", httpsLimits{header: 10 * time.Second, conns: 16, perSource: 4}, 8},
		{"the defaults", httpsLimits{}, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := tc.limits.withDefaults()
			if lim.perSource*tc.sources <= lim.conns {
				t.Fatalf("%d sources of %d connections do not reach the bound of %d", tc.sources, lim.perSource, lim.conns)
			}
			floodAPI(t, startAPIHTTPS(t, tc.limits), lim.conns, lim.perSource, tc.sources)
		})
	}
}

func floodAPI(t *testing.T, addr string, conns, perSource, sources int) {
	var slow atomic.Bool
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	admin := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil && slow.Load() {
				time.Sleep(300 * time.Millisecond)
			}
			return c, err
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer admin.CloseIdleConnections()
	get := func() (reused bool, err error) {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := admin.Do(req)
		if err != nil {
			return false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return reused, fmt.Errorf("status %d", resp.StatusCode)
		}
		return reused, nil
	}
	if _, err := get(); err != nil {
		t.Fatalf("before the flood: %v", err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var dials atomic.Int64
	for i := range sources * perSource {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+i%sources))}, Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				dials.Add(1)
				closedWithin(c, 200*time.Millisecond) // held until closed, or let go to come back
				c.Close()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	if err := lab.WaitFor(lab.Within(t, 5*time.Second), 10*time.Millisecond, func() error {
		if n := dials.Load(); n < int64(4*conns) {
			return fmt.Errorf("%d flood connections", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The kept-alive connection made an authenticated request: it no longer counts, and stays.
	if reused, err := get(); err != nil || !reused {
		t.Fatalf("on the kept-alive connection during the flood: reused=%v %v", reused, err)
	}
	slow.Store(true)
	for i := range 3 {
		admin.CloseIdleConnections()
		if _, err := get(); err != nil {
			t.Fatalf("request %d on a new connection during the flood (%d flood connections so far): %v", i, dials.Load(), err)
		}
	}
	t.Logf("%d flood connections from %d sources", dials.Load(), sources)
}
