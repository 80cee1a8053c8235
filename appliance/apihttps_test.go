package appliance

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
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
	a := &apiHTTPS{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		stateDir: t.TempDir(), health: health.New(), log: quietLog(), limits: limits}
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

// TestAPIHTTPSCapsConnections: connections from one source beyond its cap are closed at once and do not take
// the server's slots: an authenticated request from another address still gets its answer.
func TestAPIHTTPSCapsConnections(t *testing.T) {
	addr := startAPIHTTPS(t, httpsLimits{header: 10 * time.Second, conns: 6, perSource: 2})
	var held []net.Conn
	for range 50 {
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	open := 0
	for _, c := range held {
		if _, closed := closedWithin(c, 200*time.Millisecond); !closed {
			open++
		}
	}
	if open != 2 {
		t.Fatalf("%d of 50 connections from one source stayed open, want its cap of 2", open)
	}
	if code, err := authorized(t, "127.0.0.2", addr); err != nil || code != http.StatusOK {
		t.Fatalf("an authenticated request while a source floods: %d %v", code, err)
	}
	// The flooding source itself gets in again once its connections are gone.
	for _, c := range held {
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if code, err := authorized(t, "127.0.0.1", addr); err != nil || code != http.StatusOK {
		t.Fatalf("a request from the source after its connections closed: %d %v", code, err)
	}
}
