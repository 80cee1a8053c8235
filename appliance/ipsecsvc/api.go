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

// Status is the answer of GET /api/v1/ipsec/status: the engine's status, its tunnels named as in the
// configuration, and whether the engine runs at all (it does while a connection is configured).
type Status struct {
	Running bool `json:"running"`
	ike.Status
}

// Imported is the answer of POST /api/v1/ipsec/import.
type Imported struct {
	Name     string   `json:"name"`
	Format   string   `json:"format"`
	Tunnels  int      `json:"tunnels"`
	Commands []string `json:"commands"`
	Changed  bool     `json:"changed"`
	Message  string   `json:"message"`
}

// status: GET /api/v1/ipsec/status.
func (a *API) status(*http.Request) (any, error) { return a.Status(), nil }

// Status is the engine's status with connections → tunnels named as in the configuration: GET
// /api/v1/ipsec/status and the metrics.
func (a *API) Status() Status {
	st := a.Component.Status()
	if st == nil {
		return Status{Status: ike.Status{Connections: []ike.ConnectionStatus{}}}
	}
	engineNames := map[string]string{} // the engine's tunnel names (the interfaces' too) → the configuration's
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
				engineNames[c.Tunnels[j].Name] = c.Name + " " + names[j]
				c.Tunnels[j].Name = names[j]
			}
		}
	}
	for i, r := range st.BGPRoutes {
		if n, ok := engineNames[r.Neighbor]; ok {
			st.BGPRoutes[i].Neighbor = n
		}
	}
	return Status{Running: true, Status: *st}
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
	return Imported{Name: opts.Name, Format: string(conn.Format), Tunnels: len(cc.Tunnels), Commands: commands,
		Changed: a.Store.Changed(), Message: fmt.Sprintf("connection %s is in the candidate; review it with compare, apply it with commit", opts.Name)}, nil
}
