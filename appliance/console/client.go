package console

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"toride/appliance/api"
	"toride/appliance/cloudapi"
	"toride/appliance/ipsecsvc"
	"toride/appliance/logring"
	"toride/appliance/sslvpnsvc"
	"toride/appliance/sysimage"
	"toride/appliance/system"
)

// API is what the console asks of torided. *Client is the real one, over the API socket; tests give a fake.
type API interface {
	// Config is GET /api/v1/config in JSON, as the server sends it.
	Config(ctx context.Context, source string, showSecrets bool) ([]byte, error)
	ConfigTree(ctx context.Context, source string, showSecrets bool) (api.ConfigTree, error)
	ConfigCommands(ctx context.Context, source string, showSecrets bool) (api.ConfigCommands, error)
	// MarkedTree is the candidate from the node at path down, each line marked against the running configuration.
	MarkedTree(ctx context.Context, path []string) (api.ConfigTree, error)
	PutCandidate(ctx context.Context, configJSON []byte) (api.Changed, error)
	Set(ctx context.Context, path []string) (api.Changed, error)
	Delete(ctx context.Context, path []string) (api.Changed, error)
	Discard(ctx context.Context) (api.Changed, error)
	Commit(ctx context.Context, comment string, confirmMinutes int) (api.Committed, error)
	Confirm(ctx context.Context) (api.Confirmed, error)
	// Compare is the candidate against the running configuration, or against archive entry rev when rev >= 0.
	Compare(ctx context.Context, rev int) (api.Compare, error)
	Rollback(ctx context.Context, rev int) (api.Committed, error)
	Commits(ctx context.Context) (api.Commits, error)
	Describe(ctx context.Context, path []string) (api.Description, error)
	// Status is GET /api/v1/status in JSON, as the server sends it (components add sections of their own).
	Status(ctx context.Context) ([]byte, error)
	IPsecStatus(ctx context.Context) (ipsecsvc.Status, error)
	SSLVPNStatus(ctx context.Context) (sslvpnsvc.Status, error)
	SSLVPNSessions(ctx context.Context) (sslvpnsvc.Sessions, error)
	ImportAWSVPN(ctx context.Context, file []byte, opts url.Values) (ipsecsvc.Imported, error)
	Interfaces(ctx context.Context) (system.Interfaces, error)
	SystemImage(ctx context.Context) (sysimage.Status, error)
	// InstallImage writes the root image at path (on the appliance) into the other slot; sum "" reads path.sha256.
	InstallImage(ctx context.Context, path, sum string) (sysimage.Installed, error)
	Reboot(ctx context.Context) error
	PowerOff(ctx context.Context) error
	// Log is torided's newest lines, of component ("" for all).
	Log(ctx context.Context, component string, lines int) (logring.Lines, error)

	// The requests below are the cloud-compatible REST API's (/vpn/nfv/ssl-vpn-v3-connections/SERVER/…), the
	// server named as in the configuration.
	IssueOTP(ctx context.Context, server, user string) (cloudapi.OTPIssued, error)
	DeleteOTP(ctx context.Context, server, user string) error
	Disconnect(ctx context.Context, server, sessionID string) error
	LoadCRL(ctx context.Context, server string, crl []byte) (cloudapi.CRLLoaded, error)
	IssueCertificate(ctx context.Context, server, user string) (cloudapi.IssuedCertificate, error)
	RevokeCertificate(ctx context.Context, server, user string) error
	// ClientConfig is the user's OpenVPN profile (.ovpn) for server, over UDP when udp is set.
	ClientConfig(ctx context.Context, server, user string, udp bool) ([]byte, error)
}

// Client is API over torided's socket. It is safe for concurrent use.
type Client struct {
	c *api.Client
}

// NewClient returns a Client of the API socket at path.
func NewClient(path string) *Client { return &Client{c: api.NewClient(path)} }

func configQuery(source, format string, showSecrets bool) string {
	q := url.Values{"source": {source}, "format": {format}, "secrets": {"hide"}}
	if showSecrets {
		q.Set("secrets", "show")
	}
	return "/api/v1/config?" + q.Encode()
}

func (c *Client) Config(ctx context.Context, source string, showSecrets bool) ([]byte, error) {
	var raw []byte
	err := c.c.Do(ctx, "GET", configQuery(source, "json", showSecrets), nil, &raw)
	return raw, err
}

func (c *Client) ConfigTree(ctx context.Context, source string, showSecrets bool) (api.ConfigTree, error) {
	var out api.ConfigTree
	err := c.c.Do(ctx, "GET", configQuery(source, "tree", showSecrets), nil, &out)
	return out, err
}

func (c *Client) ConfigCommands(ctx context.Context, source string, showSecrets bool) (api.ConfigCommands, error) {
	var out api.ConfigCommands
	err := c.c.Do(ctx, "GET", configQuery(source, "commands", showSecrets), nil, &out)
	return out, err
}

func (c *Client) MarkedTree(ctx context.Context, path []string) (api.ConfigTree, error) {
	var out api.ConfigTree
	q := url.Values{"source": {"candidate"}, "format": {"marked"}, "path": {strings.Join(path, " ")}}
	err := c.c.Do(ctx, "GET", "/api/v1/config?"+q.Encode(), nil, &out)
	return out, err
}

func (c *Client) PutCandidate(ctx context.Context, configJSON []byte) (api.Changed, error) {
	var out api.Changed
	err := c.c.Do(ctx, "PUT", "/api/v1/config/candidate", json.RawMessage(configJSON), &out)
	return out, err
}

type pathRequest struct {
	Path []string `json:"path"`
}

func (c *Client) Set(ctx context.Context, path []string) (api.Changed, error) {
	var out api.Changed
	err := c.c.Do(ctx, "POST", "/api/v1/config/set", pathRequest{path}, &out)
	return out, err
}

func (c *Client) Delete(ctx context.Context, path []string) (api.Changed, error) {
	var out api.Changed
	err := c.c.Do(ctx, "POST", "/api/v1/config/delete", pathRequest{path}, &out)
	return out, err
}

func (c *Client) Discard(ctx context.Context) (api.Changed, error) {
	var out api.Changed
	err := c.c.Do(ctx, "POST", "/api/v1/config/discard", nil, &out)
	return out, err
}

type commitRequest struct {
	Comment        string `json:"comment"`
	ConfirmMinutes int    `json:"confirm_minutes"`
}

func (c *Client) Commit(ctx context.Context, comment string, confirmMinutes int) (api.Committed, error) {
	var out api.Committed
	err := c.c.Do(ctx, "POST", "/api/v1/config/commit", commitRequest{comment, confirmMinutes}, &out)
	return out, err
}

func (c *Client) Confirm(ctx context.Context) (api.Confirmed, error) {
	var out api.Confirmed
	err := c.c.Do(ctx, "POST", "/api/v1/config/confirm", nil, &out)
	return out, err
}

func (c *Client) Compare(ctx context.Context, rev int) (api.Compare, error) {
	var out api.Compare
	path := "/api/v1/config/compare"
	if rev >= 0 {
		path += "?rev=" + strconv.Itoa(rev)
	}
	err := c.c.Do(ctx, "GET", path, nil, &out)
	return out, err
}

type rollbackRequest struct {
	Revision int `json:"revision"`
}

func (c *Client) Rollback(ctx context.Context, rev int) (api.Committed, error) {
	var out api.Committed
	err := c.c.Do(ctx, "POST", "/api/v1/config/rollback", rollbackRequest{rev}, &out)
	return out, err
}

func (c *Client) Commits(ctx context.Context) (api.Commits, error) {
	var out api.Commits
	err := c.c.Do(ctx, "GET", "/api/v1/config/commits", nil, &out)
	return out, err
}

func (c *Client) Describe(ctx context.Context, path []string) (api.Description, error) {
	var out api.Description
	err := c.c.Do(ctx, "GET", "/api/v1/config/describe?"+url.Values{"path": {strings.Join(path, " ")}}.Encode(), nil, &out)
	return out, err
}

func (c *Client) Status(ctx context.Context) ([]byte, error) {
	var raw []byte
	err := c.c.Do(ctx, "GET", "/api/v1/status", nil, &raw)
	return raw, err
}

func (c *Client) IPsecStatus(ctx context.Context) (ipsecsvc.Status, error) {
	var out ipsecsvc.Status
	err := c.c.Do(ctx, "GET", "/api/v1/ipsec/status", nil, &out)
	return out, err
}

func (c *Client) SSLVPNStatus(ctx context.Context) (sslvpnsvc.Status, error) {
	var out sslvpnsvc.Status
	err := c.c.Do(ctx, "GET", "/api/v1/sslvpn/status", nil, &out)
	return out, err
}

func (c *Client) SSLVPNSessions(ctx context.Context) (sslvpnsvc.Sessions, error) {
	var out sslvpnsvc.Sessions
	err := c.c.Do(ctx, "GET", "/api/v1/sslvpn/sessions", nil, &out)
	return out, err
}

func (c *Client) ImportAWSVPN(ctx context.Context, file []byte, opts url.Values) (ipsecsvc.Imported, error) {
	var out ipsecsvc.Imported
	err := c.c.Do(ctx, "POST", "/api/v1/ipsec/import?"+opts.Encode(), file, &out)
	return out, err
}

// connectionPath is the REST API's path of an SSL-VPN connection (a server), by name, with more path elements.
func connectionPath(server string, elems ...string) string {
	p := "/vpn/nfv/ssl-vpn-v3-connections/" + url.PathEscape(server)
	for _, e := range elems {
		p += "/" + url.PathEscape(e)
	}
	return p
}

type otpRequest struct {
	Connection struct {
		UserID string `json:"user_id"`
	} `json:"ssl-vpn-v3-connection"`
}

func (c *Client) IssueOTP(ctx context.Context, server, user string) (cloudapi.OTPIssued, error) {
	var req otpRequest
	req.Connection.UserID = user
	var out cloudapi.OTPIssued
	err := c.c.Do(ctx, "POST", connectionPath(server, "otp"), req, &out)
	return out, err
}

func (c *Client) DeleteOTP(ctx context.Context, server, user string) error {
	return c.c.Do(ctx, "DELETE", connectionPath(server, "otp", user), nil, nil)
}

func (c *Client) Disconnect(ctx context.Context, server, sessionID string) error {
	return c.c.Do(ctx, "DELETE", connectionPath(server, "sessions", sessionID), nil, nil)
}

func (c *Client) LoadCRL(ctx context.Context, server string, crl []byte) (cloudapi.CRLLoaded, error) {
	var out cloudapi.CRLLoaded
	err := c.c.Do(ctx, "PUT", connectionPath(server, "crl"), crl, &out)
	return out, err
}

func (c *Client) IssueCertificate(ctx context.Context, server, user string) (cloudapi.IssuedCertificate, error) {
	var out cloudapi.IssuedCertificate
	err := c.c.Do(ctx, "POST", connectionPath(server, "users", user, "certificate"), nil, &out)
	return out, err
}

func (c *Client) RevokeCertificate(ctx context.Context, server, user string) error {
	return c.c.Do(ctx, "DELETE", connectionPath(server, "users", user, "certificate"), nil, nil)
}

func (c *Client) ClientConfig(ctx context.Context, server, user string, udp bool) ([]byte, error) {
	q := url.Values{"user_id": {user}}
	if udp {
		q.Set("proto", "udp")
	}
	var raw []byte
	err := c.c.Do(ctx, "GET", connectionPath(server, "client-config")+"?"+q.Encode(), nil, &raw)
	return raw, err
}

func (c *Client) Log(ctx context.Context, component string, lines int) (logring.Lines, error) {
	q := url.Values{"lines": {strconv.Itoa(lines)}}
	if component != "" {
		q.Set("component", component)
	}
	var out logring.Lines
	err := c.c.Do(ctx, "GET", "/api/v1/log?"+q.Encode(), nil, &out)
	return out, err
}

func (c *Client) SystemImage(ctx context.Context) (sysimage.Status, error) {
	var out sysimage.Status
	err := c.c.Do(ctx, "GET", "/api/v1/system/image", nil, &out)
	return out, err
}

func (c *Client) InstallImage(ctx context.Context, path, sum string) (sysimage.Installed, error) {
	var out sysimage.Installed
	err := c.c.Do(ctx, "POST", "/api/v1/system/image/install", sysimage.InstallRequest{Path: path, SHA256: sum}, &out)
	return out, err
}

func (c *Client) Reboot(ctx context.Context) error {
	return c.c.Do(ctx, "POST", "/api/v1/system/reboot", nil, nil)
}

func (c *Client) PowerOff(ctx context.Context) error {
	return c.c.Do(ctx, "POST", "/api/v1/system/poweroff", nil, nil)
}

func (c *Client) Interfaces(ctx context.Context) (system.Interfaces, error) {
	var out system.Interfaces
	err := c.c.Do(ctx, "GET", "/api/v1/system/interfaces", nil, &out)
	return out, err
}
