package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"toride/appliance/config"
	"toride/appliance/store"
)

type nopApplier struct{}

func (nopApplier) Apply(context.Context, *config.Config, *config.Config) error { return nil }

const psk = "Key.with_dots1"

type apiFixture struct {
	t     *testing.T
	store *store.Store
	srv   *Server
	log   bytes.Buffer
}

// newAPIFixture serves a store whose running configuration and candidate both hold a pre-shared key, and an API
// key hash in the candidate only.
func newAPIFixture(t *testing.T) *apiFixture {
	f := &apiFixture{t: t}
	st, err := store.Open(store.Options{Dir: t.TempDir(), Applier: nopApplier{}, Validate: func(*config.Config) config.Problems { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	f.store = st
	f.srv = New(Options{Store: st, Logger: slog.New(slog.NewTextHandler(&f.log, nil))})
	f.do("POST", "/api/v1/config/commands", `{"commands": ["set ipsec connections aws tunnels tunnel1 pre-shared-key '`+psk+`'"]}`, http.StatusOK)
	f.do("POST", "/api/v1/config/commit", "", http.StatusOK)
	f.do("POST", "/api/v1/config/commands", `{"commands": ["set api keys ops key-sha256 '`+strings.Repeat("ab", 32)+`'", "set system host-name edited"]}`, http.StatusOK)
	return f
}

func (f *apiFixture) do(method, path, body string, status int) string {
	f.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r = r.WithContext(WithAuthor(r.Context(), "alice"))
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	if w.Code != status {
		f.t.Fatalf("%s %s = %d %s, want %d", method, path, w.Code, w.Body, status)
	}
	return w.Body.String()
}

// TestConfigOutputsHideSecrets: every way to read a configuration shows each secret as ****.
func TestConfigOutputsHideSecrets(t *testing.T) {
	f := newAPIFixture(t)
	hash := strings.Repeat("ab", 32)
	for _, path := range []string{
		"/api/v1/config",
		"/api/v1/config?format=commands",
		"/api/v1/config?format=tree",
		"/api/v1/config?source=candidate",
		"/api/v1/config?source=candidate&format=commands",
		"/api/v1/config?source=candidate&format=tree&secrets=hide",
		"/api/v1/config/compare",
		"/api/v1/config/compare?rev=1",
		"/api/v1/config/describe?path=ipsec+connections+aws+tunnels+tunnel1+pre-shared-key",
	} {
		out := f.do("GET", path, "", http.StatusOK)
		if strings.Contains(out, psk) || strings.Contains(out, hash) {
			t.Errorf("GET %s shows a secret:\n%s", path, out)
		}
		if !strings.Contains(path, "describe") && !strings.Contains(out, "****") {
			t.Errorf("GET %s shows no ****:\n%s", path, out)
		}
	}
	if strings.Contains(f.log.String(), "secrets shown") {
		t.Fatal("a plain read was logged as a reveal")
	}
}

// TestShowSecretsIsExplicitAndLogged: secrets=show gives the values and leaves a log line naming who asked.
func TestShowSecretsIsExplicitAndLogged(t *testing.T) {
	f := newAPIFixture(t)
	out := f.do("GET", "/api/v1/config?source=candidate&format=commands&secrets=show", "", http.StatusOK)
	if !strings.Contains(out, psk) || !strings.Contains(out, strings.Repeat("ab", 32)) {
		t.Fatalf("secrets=show hides them:\n%s", out)
	}
	if l := f.log.String(); !strings.Contains(l, "configuration secrets shown") || !strings.Contains(l, "to=alice") || !strings.Contains(l, "source=candidate") {
		t.Fatalf("the reveal is not logged with who asked:\n%s", l)
	}
	if strings.Contains(f.log.String(), psk) {
		t.Fatal("the log holds the secret")
	}
	f.do("GET", "/api/v1/config?secrets=yes", "", http.StatusBadRequest)
}

// TestPutRedactedConfigKeepsSecrets: a configuration read as **** and put back keeps its secrets; **** where
// there is nothing to keep, or in a set line, is refused naming the field.
func TestPutRedactedConfigKeepsSecrets(t *testing.T) {
	f := newAPIFixture(t)
	var c config.Config
	if err := json.Unmarshal([]byte(f.do("GET", "/api/v1/config?source=candidate", "", http.StatusOK)), &c); err != nil {
		t.Fatal(err)
	}
	c.System.HostName = "put-back"
	body, _ := json.Marshal(&c)
	f.do("PUT", "/api/v1/config/candidate", string(body), http.StatusOK)
	cand := f.store.Candidate()
	if cand.System.HostName != "put-back" || cand.IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey != psk ||
		string(cand.API.Keys["ops"].KeyHash) != strings.Repeat("ab", 32) {
		t.Fatalf("after the round trip the candidate holds %+v", cand)
	}

	c.Users = map[string]*config.User{"bob": {PasswordHash: "****"}}
	body, _ = json.Marshal(&c)
	if out := f.do("PUT", "/api/v1/config/candidate", string(body), http.StatusBadRequest); !strings.Contains(out, "users bob password-hash") {
		t.Fatalf("PUT with a placeholder for a new secret: %s", out)
	}
	out := f.do("POST", "/api/v1/config/set", `{"path": ["ipsec", "connections", "aws", "tunnels", "tunnel1", "pre-shared-key", "****"]}`, http.StatusBadRequest)
	if !strings.Contains(out, "pre-shared-key") || !strings.Contains(out, "leave this line out") {
		t.Fatalf("set pre-shared-key ****: %s", out)
	}
	if f.store.Candidate().IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey != psk {
		t.Fatal("the placeholder replaced the key")
	}
}
