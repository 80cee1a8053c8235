package cloudapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"toride/appliance/api"
	"toride/appliance/config"
	"toride/appliance/store"
	"toride/sslvpn"
)

type nopApplier struct{}

func (nopApplier) Apply(context.Context, *config.Config, *config.Config) error { return nil }

// request is a request to a handler as the router hands it over: the path's values set.
func request(method, body string, values ...string) *http.Request {
	r := httptest.NewRequest(method, "/", strings.NewReader(body))
	for i := 0; i+1 < len(values); i += 2 {
		r.SetPathValue(values[i], values[i+1])
	}
	return r
}

func wantStatus(t *testing.T, what string, reply any, err error, status int) {
	t.Helper()
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		if ae.Status != status {
			t.Errorf("%s: %d %s, want %d", what, ae.Status, ae.Message, status)
		}
	case err != nil:
		t.Errorf("%s: %v, want %d", what, err, status)
	default:
		got := http.StatusOK
		if rep, ok := reply.(api.Reply); ok {
			got = rep.Status
		}
		if got != status {
			t.Errorf("%s: %d, want %d", what, got, status)
		}
	}
}

// newStoreAPI is an API over a store of its own, in a temporary directory, that applies nothing.
func newStoreAPI(t *testing.T) (*store.Store, *API) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), Applier: nopApplier{}, Validate: func(*config.Config) config.Problems { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, &API{Store: st}
}

// TestDeletes: each DELETE answers 204 once its change is committed, and 404 for what is not there (again).
func TestDeletes(t *testing.T) {
	st, f := newStoreAPI(t)
	_, err := st.Change(context.Background(), "test", "set up", func(c *config.Config) error {
		c.SSLVPN.Services = map[string]*sslvpn.ServiceSettings{"office": {ID: "svc-1"}, "spare": {ID: "svc-2"}}
		c.SSLVPN.Servers = map[string]*sslvpn.ServerSettings{"main": {ID: "conn-1", Service: "office"}}
		c.Users = map[string]*config.User{"alice": {OTPKey: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := f.deleteService(request("DELETE", "", "id", "svc-1"))
	wantStatus(t, "service in use", reply, err, http.StatusConflict)
	reply, err = f.deleteService(request("DELETE", "", "id", "svc-2"))
	wantStatus(t, "service", reply, err, http.StatusNoContent)
	reply, err = f.deleteService(request("DELETE", "", "id", "svc-2"))
	wantStatus(t, "service again", reply, err, http.StatusNotFound)

	reply, err = f.deleteOTP(request("DELETE", "", "id", "conn-1", "user_id", "alice"))
	wantStatus(t, "OTP key", reply, err, http.StatusNoContent)
	if st.Running().Users["alice"].OTPKey != "" {
		t.Error("the OTP key is still configured")
	}
	reply, err = f.deleteOTP(request("DELETE", "", "id", "conn-1", "user_id", "alice"))
	wantStatus(t, "OTP key again", reply, err, http.StatusNotFound)

	reply, err = f.deleteConnection(request("DELETE", "", "id", "conn-1"))
	wantStatus(t, "connection", reply, err, http.StatusNoContent)
	if st.Running().SSLVPN.Servers["main"] != nil {
		t.Error("the connection is still configured")
	}
	reply, err = f.deleteConnection(request("DELETE", "", "id", "conn-1"))
	wantStatus(t, "connection again", reply, err, http.StatusNotFound)
}

// TestConnectionByName: a connection is found by its ID or, as the console names it, by its name; one without an
// ID (configured by set lines) too; an OTP key issued so comes back typed, with its otpauth:// URI.
func TestConnectionByName(t *testing.T) {
	st, f := newStoreAPI(t)
	_, err := st.Change(context.Background(), "test", "set up", func(c *config.Config) error {
		c.SSLVPN.Servers = map[string]*sslvpn.ServerSettings{"main": {ID: "conn-1"}, "branch": {}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"conn-1": "main", "main": "main", "branch": "branch", "": "", "conn-2": ""} {
		_, name, _, err := f.connection(request("GET", "", "id", id))
		if name != want || (want == "") != (err != nil) {
			t.Errorf("connection %q: %q, %v; want %q", id, name, err, want)
		}
	}
	reply, err := f.createOTP(request("POST", `{"ssl-vpn-v3-connection": {"user_id": "carol"}}`, "id", "branch"))
	wantStatus(t, "OTP key", reply, err, http.StatusCreated)
	if err != nil {
		return
	}
	key := reply.(api.Reply).Body.(OTPIssued).Key
	if key.UserID != "carol" || len(key.Secret) < 16 || !strings.HasPrefix(key.OTPAuthURI, "otpauth://totp/") ||
		!strings.Contains(key.OTPAuthURI, "secret="+key.Secret) {
		t.Errorf("OTP key %+v", key)
	}
	if got := string(st.Running().Users["carol"].OTPKey); got != key.Secret {
		t.Errorf("configured key %q, issued %q", got, key.Secret)
	}
}
