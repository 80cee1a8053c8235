package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
)

func keyHash(key string) config.Secret {
	sum := sha256.Sum256([]byte(key))
	return config.Secret(hex.EncodeToString(sum[:]))
}

// TestAPIKeyRoles: over HTTPS a missing or wrong key gets 401; a read-only key reads (200) but gets 403 on
// anything that changes state or shows a secret, and the handler never sees those; an admin key (the default
// role) may do anything; the unix socket asks for no key and is admin.
func TestAPIKeyRoles(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	cfg := &config.Config{}
	cfg.API.HTTPS.ListenAddress = netip.MustParseAddr("127.0.0.1")
	cfg.API.HTTPS.Port = port
	cfg.API.Keys = map[string]*config.APIKey{
		"ops":     {KeyHash: keyHash("admin-key")}, // no role: admin
		"grafana": {KeyHash: keyHash("viewer-key"), Role: RoleReadOnly},
	}
	var reached []string
	mux := http.NewServeMux()
	for _, p := range []string{"GET /api/v1/status", "GET /api/v1/config", "POST /api/v1/config/set", "DELETE /vpn/nfv/vpnservices/{id}",
		"GET /vpn/nfv/ssl-vpn-v3-connections/{id}/client-config", "PUT /vpn/nfv/ssl-vpn-v3-connections/{id}/crl"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			reached = append(reached, r.Method+" "+r.URL.Path+" by "+Author(r.Context()))
			io.WriteString(w, "{}")
		})
	}
	a := &HTTPSListener{handler: mux, stateDir: t.TempDir(), health: health.New(), log: slog.New(slog.DiscardHandler)}
	if err := a.Apply(context.Background(), nil, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	base := "https://" + netip.AddrPortFrom(cfg.API.HTTPS.ListenAddress, uint16(port)).String()

	for _, tt := range []struct {
		key, method, path string
		status            int
	}{
		{"", "GET", "/api/v1/status", 401},
		{"wrong", "GET", "/api/v1/status", 401},
		{"", "POST", "/api/v1/config/set", 401},
		{"viewer-key", "GET", "/api/v1/status", 200},
		{"viewer-key", "GET", "/api/v1/config?secrets=hide", 200},
		{"viewer-key", "GET", "/api/v1/config?secrets=show", 403},
		{"viewer-key", "POST", "/api/v1/config/set", 403},
		{"viewer-key", "DELETE", "/vpn/nfv/vpnservices/x", 403},
		{"viewer-key", "PUT", "/vpn/nfv/ssl-vpn-v3-connections/main/crl", 403},
		{"viewer-key", "GET", "/vpn/nfv/ssl-vpn-v3-connections/main/client-config?user_id=bob", 403},
		{"admin-key", "POST", "/api/v1/config/set", 200},
		{"admin-key", "GET", "/api/v1/config?secrets=show", 200},
		{"admin-key", "GET", "/vpn/nfv/ssl-vpn-v3-connections/main/client-config?user_id=bob", 200},
	} {
		req, _ := http.NewRequest(tt.method, base+tt.path, nil)
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		before := len(reached)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s with %q: %d %s, want %d", tt.method, tt.path, tt.key, resp.StatusCode, body, tt.status)
		}
		if got := len(reached) > before; got != (tt.status == 200) {
			t.Errorf("%s %s with %q: the handler was reached: %v", tt.method, tt.path, tt.key, got)
		}
		if tt.status == 403 && !strings.Contains(string(body), `"code": "forbidden"`) {
			t.Errorf("403 body: %s", body)
		}
	}
	if want := "POST /api/v1/config/set by api-key:ops"; !strings.Contains(strings.Join(reached, "\n"), want) {
		t.Errorf("the handler saw %q, want %q among them", reached, want)
	}

	// The unix socket: no key, every request.
	srv := New(Options{})
	srv.HandleFunc("DELETE /vpn/nfv/vpnservices/{id}", func(*http.Request) (any, error) { return Reply{Status: http.StatusNoContent}, nil })
	sock := filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.ServeUnix(ctx, sock, func() { close(ready) }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	c := NewClient(sock)
	if err := c.Do(context.Background(), "DELETE", "/vpn/nfv/vpnservices/x", nil, nil); err != nil {
		t.Errorf("DELETE on the socket: %v", err)
	}
}
