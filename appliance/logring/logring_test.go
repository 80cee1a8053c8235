package logring

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"toride/appliance/api"
)

// TestRing: the ring keeps the last records of level info and above, oldest first, with the component the
// logger was made with and the other attributes, groups included; the next handler gets what its level lets
// through, untouched.
func TestRing(t *testing.T) {
	var next bytes.Buffer
	r := New(3)
	log := slog.New(r.Handler(slog.NewTextHandler(&next, &slog.HandlerOptions{Level: slog.LevelWarn})))
	vpn := log.With("component", "sslvpn")
	log.Info("first")
	vpn.Debug("not kept")
	vpn.Info("login", "user", "alice", "remote", "192.0.2.7:1194")
	log.With("component", "ipsec").WithGroup("tunnel").Warn("down", "name", "tunnel1", slog.Group("probe", "loss", 0.5))
	vpn.Error("refused", "reason", "bad otp code")

	got := r.Last("", 10)
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	if strings.Join(msgs, ",") != "login,down,refused" {
		t.Fatalf("kept %q, want the last three of info and above", msgs)
	}
	if e := got[0]; e.Component != "sslvpn" || e.Level != "INFO" || e.Attrs != "user=alice remote=192.0.2.7:1194" {
		t.Errorf("login: %+v", e)
	}
	if e := got[1]; e.Component != "ipsec" || e.Attrs != "tunnel.name=tunnel1 tunnel.probe.loss=0.5" {
		t.Errorf("down: %+v", e)
	}
	if e := got[2]; e.Attrs != `reason="bad otp code"` || !strings.Contains(e.String(), `ERROR sslvpn: refused reason="bad otp code"`) {
		t.Errorf("refused: %+v, %s", e, e)
	}
	if got := r.Last("sslvpn", 10); len(got) != 2 || got[1].Message != "refused" {
		t.Errorf("sslvpn's: %+v", got)
	}
	if got := r.Last("", 1); len(got) != 1 || got[0].Message != "refused" {
		t.Errorf("the last one: %+v", got)
	}
	if s := next.String(); strings.Contains(s, "login") || !strings.Contains(s, "tunnel.probe.loss=0.5") || !strings.Contains(s, "component=sslvpn") {
		t.Errorf("the next handler got:\n%s", s)
	}
}

// TestLogEndpoint: GET /api/v1/log gives the newest lines of a component, and refuses a bad count.
func TestLogEndpoint(t *testing.T) {
	r := New(100)
	log := slog.New(r.Handler(slog.DiscardHandler))
	for i := range 5 {
		log.With("component", "store").Info("commit", "revision", i)
		log.With("component", "api").Info("request")
	}
	srv := api.New(api.Options{})
	r.Register(srv)
	for _, tt := range []struct {
		query  string
		status int
		want   []string
	}{
		{"?component=store&lines=2", 200, []string{"revision=3", "revision=4"}},
		{"", 200, []string{"revision=0", "", "revision=1", "", "revision=2", "", "revision=3", "", "revision=4", ""}},
		{"?lines=0", 400, nil},
		{"?lines=many", 400, nil},
	} {
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/log"+tt.query, nil))
		if w.Code != tt.status {
			t.Errorf("%s: %d %s", tt.query, w.Code, w.Body)
			continue
		}
		if w.Code != http.StatusOK {
			continue
		}
		var out Lines
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		var attrs []string
		for _, e := range out.Lines {
			attrs = append(attrs, e.Attrs)
		}
		if strings.Join(attrs, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: %q, want %q", tt.query, attrs, tt.want)
		}
	}
}
