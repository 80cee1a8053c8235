package ipsecsvc

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	"toride/appliance/api"
	"toride/appliance/config"
	"toride/appliance/store"
	"toride/ike"
	"toride/ike/awsconf"
)

// API serves /api/v1/ipsec: the engine's status, and the import of the cloud's VPN configuration file into the
// candidate configuration.
type API struct {
	Store     *store.Store
	Component *Component
}

// Register routes the API's paths on s.
func (a *API) Register(s *api.Server) {
	s.HandleFunc("GET /api/v1/ipsec/status", a.status)
	s.HandleFunc("POST /api/v1/ipsec/import", a.importFile)
}

// status: GET /api/v1/ipsec/status — connections → tunnels, named as in the configuration.
func (a *API) status(r *http.Request) (any, error) {
	st := a.Component.Status()
	if st == nil {
		return map[string]any{"connections": []any{}, "running": false}, nil
	}
	running := a.Store.Running().IPsec
	for i := range st.Connections {
		c := &st.Connections[i]
		conn := running.Connections[c.Name]
		if conn == nil {
			continue
		}
		names := conn.TunnelNames()
		for j := range c.Tunnels {
			if j < len(names) {
				c.Tunnels[j].Name = names[j]
			}
		}
	}
	return map[string]any{"running": true, "backend": st.Backend, "mode": st.Mode, "capabilities": st.Capabilities, "charon": st.Charon,
		"connected": st.Connected, "applied": st.Applied, "last_error": st.LastError, "connections": st.Connections,
		"bgp_routes": st.BGPRoutes, "bgp_problems": st.BGPProblems}, nil
}

var connName = regexp.MustCompile(`[^a-z0-9-]+`)

// importFile: POST /api/v1/ipsec/import?local_networks=…&remote_networks=…&name=…[&local_address=…] with the
// cloud's configuration file (Generic text or XML) as the body. The connection goes into the candidate; commit
// applies it.
func (a *API) importFile(r *http.Request) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	parse := func(param string) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for _, v := range strings.Split(q.Get(param), ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, api.Errorf(http.StatusBadRequest, "bad_request", "%s: %q is not a network such as 10.0.0.0/16", param, v)
			}
			out = append(out, p)
		}
		return out, nil
	}
	opts := awsconf.ImportOptions{Name: q.Get("name")}
	if opts.LocalNetworks, err = parse("local_networks"); err != nil {
		return nil, err
	}
	if opts.RemoteNetworks, err = parse("remote_networks"); err != nil {
		return nil, err
	}
	if v := q.Get("local_address"); v != "" {
		if opts.LocalAddress, err = netip.ParseAddr(v); err != nil {
			return nil, api.Errorf(http.StatusBadRequest, "bad_request", "local_address: %q is not an IP address", v)
		}
	}
	conn, err := awsconf.Parse(body)
	if err != nil {
		return nil, api.Errorf(http.StatusBadRequest, "bad_file", "%v", err)
	}
	if opts.Name == "" {
		opts.Name = strings.Trim(connName.ReplaceAllString(strings.ToLower(conn.VPNConnectionID), "-"), "-")
		if opts.Name == "" || opts.Name[0] < 'a' || opts.Name[0] > 'z' {
			opts.Name = "cloud"
		}
	}
	cc, err := conn.IKEConnection(opts)
	if err != nil {
		return nil, api.Errorf(http.StatusBadRequest, "bad_file", "%v", err)
	}
	err = a.Store.Edit(func(c *config.Config) error {
		if c.IPsec.Connections == nil {
			c.IPsec.Connections = map[string]*ike.Connection{}
		}
		c.IPsec.Connections[opts.Name] = cc
		return nil
	})
	if err != nil {
		return nil, err
	}
	one := &config.Config{IPsec: ike.Config{Connections: map[string]*ike.Connection{opts.Name: cc}}}
	commands := config.Redact(one).Commands()
	return map[string]any{"name": opts.Name, "format": conn.Format, "tunnels": len(cc.Tunnels), "commands": commands,
		"changed": a.Store.Changed(), "message": fmt.Sprintf("connection %s is in the candidate; review it with compare, apply it with commit", opts.Name)}, nil
}
