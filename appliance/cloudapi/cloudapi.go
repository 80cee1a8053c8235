// Package cloudapi serves the REST API that mirrors the cloud's SSL-VPN API (/vpn/nfv/…: VPN services, SSL-VPN
// connections, one-time passwords, client certificates, CAs and CRLs, client configurations, sessions). Every
// change is a commit of its own in the configuration store; certificates and their revocations go to the
// certificate ledger. The OpenAPI document is appliance/api/openapi.yaml.
package cloudapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"toride/appliance/api"
	"toride/appliance/certs"
	"toride/appliance/config"
	"toride/appliance/sslvpnsvc"
	"toride/appliance/store"
	"toride/sslvpn"
	"toride/sslvpn/ovpnconf"
	"toride/sslvpn/pki"
	"toride/sslvpn/userauth"
)

// usersCA is the CA the appliance makes for client certificates the first time an SSL-VPN is created through the
// API.
const usersCA = "sslvpn-users"

// API serves the cloud-compatible SSL-VPN REST API (/vpn/nfv/…). Every change goes through the configuration
// store as a commit of its own; certificates and their revocations go to the certificate ledger.
type API struct {
	Store  *store.Store
	VPN    *sslvpnsvc.Component
	Logger *slog.Logger
}

// Register routes the API's paths on s.
func (f *API) Register(s *api.Server) {
	const conns = "/vpn/nfv/ssl-vpn-v3-connections"
	s.HandleFunc("POST /vpn/nfv/vpnservices", f.createService)
	s.HandleFunc("GET /vpn/nfv/vpnservices", f.listServices)
	s.HandleFunc("GET /vpn/nfv/vpnservices/{id}", f.getService)
	s.HandleFunc("DELETE /vpn/nfv/vpnservices/{id}", f.deleteService)
	s.HandleFunc("POST "+conns, f.createConnection)
	s.HandleFunc("GET "+conns, f.listConnections)
	s.HandleFunc("GET "+conns+"/{id}", f.getConnection)
	s.HandleFunc("DELETE "+conns+"/{id}", f.deleteConnection)
	s.HandleFunc("POST "+conns+"/{id}/otp", f.createOTP)
	s.HandleFunc("DELETE "+conns+"/{id}/otp/{user_id}", f.deleteOTP)
	s.HandleFunc("POST "+conns+"/{id}/users/{user_id}/certificate", f.issueCertificate)
	s.HandleFunc("DELETE "+conns+"/{id}/users/{user_id}/certificate", f.revokeCertificate)
	s.HandleFunc("PUT "+conns+"/{id}/ca", f.trustCA)
	s.HandleFunc("PUT "+conns+"/{id}/crl", f.loadCRL)
	s.HandleFunc("GET "+conns+"/{id}/client-config", f.clientConfig)
	s.HandleFunc("GET "+conns+"/{id}/sessions", f.sessions)
	s.HandleFunc("DELETE "+conns+"/{id}/sessions/{session_id}", f.disconnect)
}

// ---- objects as the API shows them ----

type serviceJSON struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	LocalNetworks   []string `json:"local_networks"`
	ExternalAddress string   `json:"external_address"`
	Status          string   `json:"status"`
}

type connectionJSON struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	PoolCIDR        string `json:"client_address_pool_cidr"`
	VPNServiceID    string `json:"vpnservice_id"`
	OTP             bool   `json:"otp"`
	Flavor          string `json:"flavor"`
	MaxSessions     int    `json:"max_sessions"`
	ExternalAddress string `json:"external_address"`
	Status          string `json:"status"`
}

func serviceOf(name string, s *sslvpn.ServiceSettings) serviceJSON {
	out := serviceJSON{ID: s.ID, Name: name, LocalNetworks: []string{}, Status: "ACTIVE"}
	for _, n := range s.LocalNetworks {
		out.LocalNetworks = append(out.LocalNetworks, n.String())
	}
	if s.ExternalAddress.IsValid() {
		out.ExternalAddress = s.ExternalAddress.String()
	}
	return out
}

func (f *API) connectionOf(c *config.Config, name string) connectionJSON {
	eff := c.WithDefaults()
	s := eff.SSLVPN.Servers[name]
	out := connectionJSON{ID: s.ID, Name: name, OTP: s.OTP, Flavor: string(s.Flavor), MaxSessions: s.MaxSessions, Status: "DOWN"}
	if s.Pool.IsValid() {
		out.PoolCIDR = s.Pool.String()
	}
	if svc := eff.SSLVPN.Services[s.Service]; svc != nil {
		out.VPNServiceID = svc.ID
		if svc.ExternalAddress.IsValid() {
			out.ExternalAddress = svc.ExternalAddress.String()
		}
	}
	if !s.Disable {
		out.Status = "ERROR"
		for _, st := range f.VPN.Concentrator().Status() {
			if st.Name == name {
				out.Status = "ACTIVE"
			}
		}
	}
	return out
}

// ---- lookups ----

func notFound(format string, args ...any) error {
	return api.Errorf(http.StatusNotFound, "not_found", format, args...)
}

func conflict(format string, args ...any) error {
	return api.Errorf(http.StatusConflict, "conflict", format, args...)
}

func badRequest(format string, args ...any) error {
	return api.Errorf(http.StatusBadRequest, "bad_request", format, args...)
}

func serviceByID(c *config.Config, id string) (string, *sslvpn.ServiceSettings) {
	for name, s := range c.SSLVPN.Services {
		if s.ID == id {
			return name, s
		}
	}
	return "", nil
}

func connectionByID(c *config.Config, id string) (string, *sslvpn.ServerSettings) {
	for name, s := range c.SSLVPN.Servers {
		if s.ID == id {
			return name, s
		}
	}
	return "", nil
}

// connection is the SSL-VPN connection of the path's {id}: its ID, or else its name in the configuration (what the
// console knows it by; a server configured by set lines has no ID).
func (f *API) connection(r *http.Request) (*config.Config, string, *sslvpn.ServerSettings, error) {
	c, id := f.Store.Running(), r.PathValue("id")
	if id == "" {
		return nil, "", nil, notFound("no SSL-VPN connection %q", id)
	}
	name, s := connectionByID(c, id)
	if s == nil {
		name, s = id, c.SSLVPN.Servers[id]
	}
	if s == nil {
		return nil, "", nil, notFound("no SSL-VPN connection %q", r.PathValue("id"))
	}
	return c, name, s, nil
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// decode reads {"<wrapper>": {...}} into v.
func decode(r *http.Request, wrapper string, v any) error {
	var outer map[string]json.RawMessage
	if err := api.DecodeJSON(r, &outer); err != nil {
		return err
	}
	inner, ok := outer[wrapper]
	if !ok || len(outer) != 1 {
		return badRequest(`the body must be {"%s": {...}}`, wrapper)
	}
	dec := json.NewDecoder(strings.NewReader(string(inner)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%s: %v", wrapper, err)
	}
	return nil
}

func (f *API) change(ctx context.Context, comment string, fn func(c *config.Config) error) error {
	_, err := f.Store.Change(ctx, api.Author(ctx), comment, fn)
	if errors.Is(err, store.ErrNoChanges) {
		return nil
	}
	return err
}

// noContent answers a request whose change has nothing to show: 204 No Content, or the change's error.
func noContent(err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusNoContent}, nil
}

// ---- VPN services ----

func (f *API) createService(r *http.Request) (any, error) {
	var req struct {
		Name            string   `json:"name"`
		LocalNetworks   []string `json:"local_networks"`
		ExternalAddress string   `json:"external_address"`
	}
	if err := decode(r, "vpnservice", &req); err != nil {
		return nil, err
	}
	var svc sslvpn.ServiceSettings
	if req.Name == "" {
		return nil, badRequest("vpnservice.name is required")
	}
	for _, n := range req.LocalNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, badRequest("vpnservice.local_networks: %q is not a network such as 10.50.0.0/24", n)
		}
		svc.LocalNetworks = append(svc.LocalNetworks, p)
	}
	if req.ExternalAddress != "" {
		a, err := netip.ParseAddr(req.ExternalAddress)
		if err != nil {
			return nil, badRequest("vpnservice.external_address: %q is not an IP address", req.ExternalAddress)
		}
		svc.ExternalAddress = a
	}
	if _, exists := f.Store.Running().SSLVPN.Services[req.Name]; exists {
		return nil, conflict("a VPN service named %q exists already", req.Name)
	}
	svc.ID = newUUID()
	err := f.change(r.Context(), "create VPN service "+req.Name, func(c *config.Config) error {
		if err := c.Set([]string{"sslvpn", "services", req.Name}); err != nil {
			return badRequest("vpnservice.name: %v", err)
		}
		s := svc
		c.SSLVPN.Services[req.Name] = &s
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: map[string]any{"vpnservice": serviceOf(req.Name, &svc)}}, nil
}

func (f *API) listServices(r *http.Request) (any, error) {
	c := f.Store.Running()
	list := []serviceJSON{}
	for _, name := range slices.Sorted(maps.Keys(c.SSLVPN.Services)) {
		list = append(list, serviceOf(name, c.SSLVPN.Services[name]))
	}
	return map[string]any{"vpnservices": list}, nil
}

func (f *API) getService(r *http.Request) (any, error) {
	name, s := serviceByID(f.Store.Running(), r.PathValue("id"))
	if s == nil {
		return nil, notFound("no VPN service %q", r.PathValue("id"))
	}
	return map[string]any{"vpnservice": serviceOf(name, s)}, nil
}

func (f *API) deleteService(r *http.Request) (any, error) {
	c := f.Store.Running()
	name, s := serviceByID(c, r.PathValue("id"))
	if s == nil {
		return nil, notFound("no VPN service %q", r.PathValue("id"))
	}
	for sname, srv := range c.SSLVPN.Servers {
		if srv.Service == name {
			return nil, conflict("VPN service %s is used by SSL-VPN connection %s (%s); delete that first", name, sname, srv.ID)
		}
	}
	return noContent(f.change(r.Context(), "delete VPN service "+name, func(c *config.Config) error {
		return c.Delete([]string{"sslvpn", "services", name})
	}))
}

// ---- connections ----

func (f *API) createConnection(r *http.Request) (any, error) {
	var req struct {
		Name         string `json:"name"`
		PoolCIDR     string `json:"client_address_pool_cidr"`
		VPNServiceID string `json:"vpnservice_id"`
		OTP          bool   `json:"otp"`
		Flavor       string `json:"flavor"`
		MaxSessions  int    `json:"max_sessions"`
	}
	if err := decode(r, "ssl-vpn-v3-connection", &req); err != nil {
		return nil, err
	}
	switch {
	case req.Name == "":
		return nil, badRequest("ssl-vpn-v3-connection.name is required")
	case req.VPNServiceID == "":
		return nil, badRequest("ssl-vpn-v3-connection.vpnservice_id is required (POST /vpn/nfv/vpnservices first)")
	case req.PoolCIDR == "":
		return nil, badRequest("ssl-vpn-v3-connection.client_address_pool_cidr is required, e.g. 10.8.0.0/24")
	}
	pfx, err := netip.ParsePrefix(req.PoolCIDR)
	if err != nil {
		return nil, badRequest("ssl-vpn-v3-connection.client_address_pool_cidr: %q is not a network such as 10.8.0.0/24", req.PoolCIDR)
	}
	if req.Flavor == "" {
		req.Flavor = "small"
	}
	if req.Flavor != "small" && req.Flavor != "large" {
		return nil, badRequest("ssl-vpn-v3-connection.flavor: %q is not small (20 sessions) or large (255)", req.Flavor)
	}
	running := f.Store.Running()
	svcName, svc := serviceByID(running, req.VPNServiceID)
	if svc == nil {
		return nil, notFound("no VPN service %q", req.VPNServiceID)
	}
	for name, s := range running.SSLVPN.Servers {
		if s.Service == svcName {
			return nil, conflict("VPN service %s already has SSL-VPN connection %s (%s); one SSL-VPN per VPN service", req.VPNServiceID, name, s.ID)
		}
	}
	if _, exists := running.SSLVPN.Servers[req.Name]; exists {
		return nil, conflict("an SSL-VPN connection named %q exists already", req.Name)
	}
	var caCert, caKey string
	if running.PKI.CAs[usersCA] == nil {
		// Made outside the change: the change function may run twice and must do the same both times.
		if _, caCert, caKey, err = pki.NewCA("Toride SSL-VPN users", 20*365*24*time.Hour); err != nil {
			return nil, err
		}
	}
	id := newUUID()
	err = f.change(r.Context(), "create SSL-VPN connection "+req.Name, func(c *config.Config) error {
		if c.PKI.CAs[usersCA] == nil && caCert != "" {
			if c.PKI.CAs == nil {
				c.PKI.CAs = map[string]*config.CA{}
			}
			c.PKI.CAs[usersCA] = &config.CA{Certificate: caCert, PrivateKey: config.Secret(caKey)}
		}
		if err := c.Set([]string{"sslvpn", "servers", req.Name}); err != nil {
			return badRequest("ssl-vpn-v3-connection.name: %v", err)
		}
		c.SSLVPN.Servers[req.Name] = &sslvpn.ServerSettings{ID: id, Service: svcName, Pool: pfx, OTP: req.OTP,
			Flavor: sslvpn.Flavor(req.Flavor), MaxSessions: req.MaxSessions, CA: usersCA}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: map[string]any{"ssl-vpn-v3-connection": f.connectionOf(f.Store.Running(), req.Name)}}, nil
}

func (f *API) listConnections(r *http.Request) (any, error) {
	c := f.Store.Running()
	list := []connectionJSON{}
	for _, name := range slices.Sorted(maps.Keys(c.SSLVPN.Servers)) {
		list = append(list, f.connectionOf(c, name))
	}
	return map[string]any{"ssl-vpn-v3-connections": list}, nil
}

func (f *API) getConnection(r *http.Request) (any, error) {
	c, name, _, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"ssl-vpn-v3-connection": f.connectionOf(c, name)}, nil
}

func (f *API) deleteConnection(r *http.Request) (any, error) {
	_, name, _, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	return noContent(f.change(r.Context(), "delete SSL-VPN connection "+name, func(c *config.Config) error {
		return c.Delete([]string{"sslvpn", "servers", name})
	}))
}

// ---- OTP ----

// OTPIssued is the answer of POST …/{id}/otp: the key, shown this once.
type OTPIssued struct {
	Key OTPKey `json:"ssl-vpn-v3-connection"`
}

// OTPKey is a user's new TOTP key: the base32 secret and the otpauth:// URI an authenticator app scans.
type OTPKey struct {
	UserID     string `json:"user_id"`
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
}

// IssuedCertificate is the answer of POST …/{id}/users/{user_id}/certificate in PEM.
type IssuedCertificate struct {
	Certificate string    `json:"certificate"`
	PrivateKey  string    `json:"private_key"`
	CA          string    `json:"ca"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
}

// CRLLoaded is the answer of PUT …/{id}/crl.
type CRLLoaded struct {
	CRL LoadedCRL `json:"crl"`
}

// LoadedCRL is the CRL now in force for one CA of the connection.
type LoadedCRL struct {
	CA         string    `json:"ca"`
	Issuer     string    `json:"issuer"`
	Revoked    int       `json:"revoked"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Stale      bool      `json:"stale"`
}

func (f *API) createOTP(r *http.Request) (any, error) {
	_, name, _, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		UserID string `json:"user_id"`
	}
	if err := decode(r, "ssl-vpn-v3-connection", &req); err != nil {
		return nil, err
	}
	if req.UserID == "" {
		return nil, badRequest("ssl-vpn-v3-connection.user_id is required")
	}
	if u := f.Store.Running().Users[req.UserID]; u != nil && u.OTPKey != "" {
		return nil, conflict("an OTP key is issued to user %s already and cannot be shown again; DELETE …/otp/%s, then issue a new one", req.UserID, req.UserID)
	}
	secret, err := userauth.NewSecret()
	if err != nil {
		return nil, err
	}
	err = f.change(r.Context(), "issue an OTP key to "+req.UserID, func(c *config.Config) error {
		if err := c.Set([]string{"users", req.UserID}); err != nil {
			return badRequest("ssl-vpn-v3-connection.user_id: %v", err)
		}
		c.Users[req.UserID].OTPKey = config.Secret(userauth.Base32(secret)) // sealed at rest by the store
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: OTPIssued{OTPKey{
		UserID:     req.UserID,
		Secret:     userauth.Base32(secret),
		OTPAuthURI: userauth.URI("Toride "+name, req.UserID, secret),
	}}}, nil
}

func (f *API) deleteOTP(r *http.Request) (any, error) {
	if _, _, _, err := f.connection(r); err != nil {
		return nil, err
	}
	user := r.PathValue("user_id")
	if u := f.Store.Running().Users[user]; u == nil || u.OTPKey == "" {
		return nil, notFound("no OTP key is issued to user %s", user)
	}
	return noContent(f.change(r.Context(), "delete the OTP key of "+user, func(c *config.Config) error {
		if u := c.Users[user]; u != nil {
			u.OTPKey = ""
		}
		return nil
	}))
}

// ---- certificates ----

func (f *API) issuer(c *config.Config, s *sslvpn.ServerSettings) (*pki.CA, error) {
	caCfg := c.PKI.CAs[s.CA]
	if caCfg == nil || caCfg.PrivateKey == "" {
		return nil, conflict("CA %s of this connection is not held by the appliance, so it cannot issue certificates; issue them with that CA", s.CA)
	}
	return pki.ParseCA(caCfg.Certificate, string(caCfg.PrivateKey))
}

func (f *API) issueCertificate(r *http.Request) (any, error) {
	c, _, s, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	user := r.PathValue("user_id")
	if err := (&config.Config{}).Set([]string{"users", user}); err != nil {
		return nil, badRequest("user_id: %v", err)
	}
	ca, err := f.issuer(c, s)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if q.Get("format") == "p12" && q.Get("password") == "" {
		return nil, badRequest("format=p12 needs a password=… to protect the key")
	}
	e, err := f.VPN.Ledger().Issue(s.CA, certs.Client, user, func() (pki.Issued, error) { return ca.IssueClient(user, 0) })
	if err != nil {
		return nil, err
	}
	key, err := f.VPN.Ledger().Key(s.CA, e)
	if err != nil {
		return nil, err
	}
	caPEM := c.PKI.CAs[s.CA].Certificate
	switch q.Get("format") {
	case "", "pem":
	case "p12":
		p12, err := pki.PKCS12(e.CertPEM, key, caPEM, q.Get("password"))
		if err != nil {
			return nil, err
		}
		return api.Reply{Status: http.StatusCreated, Body: api.Raw{ContentType: "application/x-pkcs12", Filename: user + ".p12", Body: p12}}, nil
	default:
		return nil, badRequest("format=%q: use pem (the default) or p12", q.Get("format"))
	}
	return api.Reply{Status: http.StatusCreated, Body: IssuedCertificate{
		Certificate: e.CertPEM, PrivateKey: key, CA: caPEM, Serial: e.Serial, NotAfter: e.NotAfter,
	}}, nil
}

func (f *API) revokeCertificate(r *http.Request) (any, error) {
	c, name, s, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	if _, err := f.issuer(c, s); err != nil {
		return nil, err
	}
	user := r.PathValue("user_id")
	revoked, err := f.VPN.Ledger().RevokeSubject(s.CA, certs.Client, user)
	if errors.Is(err, certs.ErrNone) {
		return nil, notFound("no certificate of user %s to revoke", user)
	}
	if err != nil {
		return nil, err
	}
	f.Logger.Warn("certificates revoked", "user", user, "connection", name, "count", len(revoked), "by", api.Author(r.Context()))
	// The new CRL applies to the next handshake, and the sessions it revokes are cut now.
	if err := f.VPN.Refresh(r.Context()); err != nil {
		return nil, err
	}
	f.VPN.Concentrator().DisconnectUser(name, user, "certificate revoked")
	return api.Reply{Status: http.StatusNoContent}, nil
}

// trustCA: PUT …/{id}/ca with a PEM CA certificate: its client certificates are accepted from then on.
func (f *API) trustCA(r *http.Request) (any, error) {
	_, name, _, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	cert, err := pki.ParseCertificate(string(body))
	if err != nil {
		return nil, badRequest("the body must be a PEM CA certificate: %v", err)
	}
	if !cert.IsCA {
		return nil, badRequest("%s is not a CA certificate (basic constraints CA:TRUE)", cert.Subject)
	}
	sum := sha256.Sum256(cert.Raw)
	caName := "external-" + hex.EncodeToString(sum[:6])
	err = f.change(r.Context(), "trust CA "+cert.Subject.String()+" on "+name, func(c *config.Config) error {
		if c.PKI.CAs == nil {
			c.PKI.CAs = map[string]*config.CA{}
		}
		if c.PKI.CAs[caName] == nil {
			c.PKI.CAs[caName] = &config.CA{Certificate: string(body)}
		}
		s := c.SSLVPN.Servers[name]
		if s.CA != caName && !slices.Contains(s.TrustedCAs, caName) {
			s.TrustedCAs = append(s.TrustedCAs, caName)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"ca": map[string]string{"name": caName, "subject": cert.Subject.String()},
		"ssl-vpn-v3-connection": f.connectionOf(f.Store.Running(), name)}, nil
}

// loadCRL: PUT …/{id}/crl with a CRL in PEM or DER, for one of the connection's CAs. It applies at once: the next
// handshake checks it, and live sessions of the certificates it revokes are cut.
func (f *API) loadCRL(r *http.Request) (any, error) {
	c, name, s, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	text, crl, err := pki.CRLPEM(body)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	caName := ""
	var caCert *x509.Certificate
	for _, n := range append([]string{s.CA}, s.TrustedCAs...) {
		if ca := c.PKI.CAs[n]; ca != nil {
			if cert, err := pki.ParseCertificate(ca.Certificate); err == nil && crl.CheckSignatureFrom(cert) == nil {
				caName, caCert = n, cert
			}
		}
	}
	if caName == "" {
		return nil, api.Errorf(http.StatusUnprocessableEntity, "crl_not_trusted",
			"the CRL of %s is not signed by a CA of this connection; trust its CA first (PUT …/ca)", crl.Issuer)
	}
	if older := f.VPN.OlderThanInForce(caName, caCert, crl); older != "" {
		return nil, api.Errorf(http.StatusConflict, "crl_older", "the CRL of %s: %s; load its newest CRL", crl.Issuer, older)
	}
	err = f.change(r.Context(), fmt.Sprintf("load the CRL of %s on %s (%d revoked)", caName, name, len(crl.RevokedCertificateEntries)), func(c *config.Config) error {
		c.PKI.CAs[caName].CRL = text
		return nil
	})
	if err != nil {
		return nil, err
	}
	return CRLLoaded{LoadedCRL{CA: caName, Issuer: crl.Issuer.String(), Revoked: len(crl.RevokedCertificateEntries),
		ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate, Stale: !crl.NextUpdate.IsZero() && time.Now().After(crl.NextUpdate)}}, nil
}

// clientConfig: GET …/{id}/client-config?user_id=U[&proto=udp] — the .ovpn with the CA, the user's newest
// certificate and its key inline.
func (f *API) clientConfig(r *http.Request) (any, error) {
	c, name, s, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	user := r.URL.Query().Get("user_id")
	if user == "" {
		return nil, badRequest("client-config needs ?user_id=USER")
	}
	eff := c.WithDefaults()
	es := eff.SSLVPN.Servers[name]
	if es.OpenVPN.Disable {
		return nil, conflict("connection %s does not accept OpenVPN clients", name)
	}
	p := ovpnconf.Profile{Comment: fmt.Sprintf("Toride SSL-VPN %s for %s", name, user), OTP: es.OTP, Auth: strings.ToUpper(es.OpenVPN.Auth),
		CA: c.PKI.CAs[s.CA].Certificate, Port: es.OpenVPN.TCPPort, Proto: "tcp"}
	if r.URL.Query().Get("proto") == "udp" {
		p.Proto, p.Port = "udp", es.OpenVPN.UDPPort
	}
	for _, ci := range es.Ciphers {
		p.Ciphers = append(p.Ciphers, ci.OpenVPN())
	}
	if svc := eff.SSLVPN.Services[s.Service]; svc != nil && svc.ExternalAddress.IsValid() {
		p.Remote = svc.ExternalAddress.String()
	} else {
		p.Remote = eff.System.HostName
	}
	if c.PKI.CAs[s.CA].PrivateKey != "" {
		e, err := f.VPN.Ledger().Latest(s.CA, certs.Client, user)
		if errors.Is(err, certs.ErrNone) {
			return nil, notFound("no valid certificate is issued to %s; POST …/users/%s/certificate first", user, user)
		}
		if err != nil {
			return nil, err
		}
		if p.Key, err = f.VPN.Ledger().Key(s.CA, e); err != nil {
			return nil, err
		}
		p.Cert = e.CertPEM
	}
	if es.OpenVPN.TLSCrypt {
		key, err := f.VPN.TLSCryptKey(name)
		if err != nil {
			return nil, err
		}
		p.TLSCrypt = string(key)
	}
	return api.Raw{ContentType: "application/x-openvpn-profile", Filename: user + ".ovpn", Body: []byte(ovpnconf.Render(p))}, nil
}

// ---- sessions ----

func (f *API) sessions(r *http.Request) (any, error) {
	_, name, _, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	list := f.VPN.Concentrator().Sessions(name)
	if list == nil {
		list = []sslvpn.SessionInfo{}
	}
	return map[string]any{"sessions": list}, nil
}

func (f *API) disconnect(r *http.Request) (any, error) {
	_, name, _, err := f.connection(r)
	if err != nil {
		return nil, err
	}
	if err := f.VPN.Concentrator().Disconnect(name, r.PathValue("session_id"), "disconnected by the administrator"); err != nil {
		return nil, notFound("%v", err)
	}
	return api.Reply{Status: http.StatusNoContent}, nil
}
