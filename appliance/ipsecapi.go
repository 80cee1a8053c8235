package appliance

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"toride/appliance/api"
	"toride/appliance/config"
	"toride/appliance/store"
	"toride/ike"
	"toride/ike/awsconf"
)

// ipsecAPI serves /api/v1/ipsec: the engine's status, and the import of the cloud's VPN configuration file.
type ipsecAPI struct {
	store *store.Store
	comp  *ipsecComponent
}

func (a *ipsecAPI) register(s *api.Server) {
	s.HandleFunc("GET /api/v1/ipsec/status", a.status)
	s.HandleFunc("POST /api/v1/ipsec/import", a.importFile)
}

// status: GET /api/v1/ipsec/status — connections → tunnels, named as in the configuration.
func (a *ipsecAPI) status(r *http.Request) (any, error) {
	st := a.comp.Status()
	if st == nil {
		return map[string]any{"connections": []any{}, "running": false}, nil
	}
	_, idx := toIKE(a.store.Running().WithDefaults())
	for i := range st.Connections {
		c := &st.Connections[i]
		ci := slices.Index(idx.conns, c.Name)
		if ci < 0 {
			continue
		}
		for j := range c.Tunnels {
			if j < len(idx.tunnels[ci]) {
				c.Tunnels[j].Name = idx.tunnels[ci][j]
			}
		}
	}
	return map[string]any{"running": true, "backend": st.Backend, "capabilities": st.Capabilities, "charon": st.Charon,
		"connected": st.Connected, "applied": st.Applied, "last_error": st.LastError, "connections": st.Connections}, nil
}

var connName = regexp.MustCompile(`[^a-z0-9-]+`)

// importFile: POST /api/v1/ipsec/import?local_networks=…&remote_networks=…&name=…[&local_address=…] with the
// cloud's configuration file (Generic text or XML) as the body. The connection goes into the candidate; commit
// applies it.
func (a *ipsecAPI) importFile(r *http.Request) (any, error) {
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
				return nil, badRequest("%s: %q is not a network such as 10.0.0.0/16", param, v)
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
			return nil, badRequest("local_address: %q is not an IP address", v)
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
	ic, err := conn.IKEConnection(opts)
	if err != nil {
		return nil, api.Errorf(http.StatusBadRequest, "bad_file", "%v", err)
	}
	cc := fromIKE(ic)
	err = a.store.Edit(func(c *config.Config) error {
		if c.IPsec.Connections == nil {
			c.IPsec.Connections = map[string]*config.IPsecConnection{}
		}
		c.IPsec.Connections[opts.Name] = cc
		return nil
	})
	if err != nil {
		return nil, err
	}
	one := &config.Config{IPsec: config.IPsec{Connections: map[string]*config.IPsecConnection{opts.Name: cc}}}
	commands := config.Redact(one).Commands()
	return map[string]any{"name": opts.Name, "format": conn.Format, "tunnels": len(ic.Tunnels), "commands": commands,
		"changed": a.store.Changed(), "message": fmt.Sprintf("connection %s is in the candidate; review it with compare, apply it with commit", opts.Name)}, nil
}

var (
	encryptionName = map[ike.Encryption]string{ike.AES128: "aes128", ike.AES256: "aes256", ike.AES128GCM16: "aes128gcm16", ike.AES256GCM16: "aes256gcm16"}
	integrityName  = map[ike.Integrity]string{ike.SHA1: "sha1", ike.SHA2256: "sha256", ike.SHA2384: "sha384", ike.SHA2512: "sha512"}
)

// fromIKE turns an imported connection into the configuration's form; tunnels are named tunnel1, tunnel2.
func fromIKE(ic ike.Connection) *config.IPsecConnection {
	secs := func(d interface{ Seconds() float64 }) int { return int(d.Seconds()) }
	cc := &config.IPsecConnection{
		LocalNetworks: ic.LocalNetworks, RemoteNetworks: ic.RemoteNetworks, Routing: string(ic.Routing.Mode),
		BGP:     config.IPsecBGP{LocalASN: ic.Routing.LocalASN, RemoteASN: ic.Routing.RemoteASN, HoldTime: secs(ic.Routing.HoldTime)},
		Tunnels: map[string]*config.Tunnel{},
	}
	for i, t := range ic.Tunnels {
		ct := &config.Tunnel{
			LocalAddress: t.LocalAddress, LocalID: t.LocalID, RemoteAddress: t.RemoteAddress, PreSharedKey: config.Secret(t.PSK),
			InsideCIDR: t.InsideCIDR.Masked(), IKEVersion: t.IKEVersion, IKE: phaseFrom(t.Phase1), ESP: phaseFrom(t.Phase2),
			DisablePFS: t.DisablePFS, RekeyMargin: secs(t.RekeyMargin), ReplayWindow: t.ReplayWindow,
			DPD: config.DPD{Delay: secs(t.DPD.Delay), Timeout: secs(t.DPD.Timeout), Action: string(t.DPD.Action)},
		}
		if t.RekeyFuzz > 0 {
			ct.RekeyFuzz = t.RekeyFuzz
		}
		if t.NATTraversal == ike.NATTForce {
			ct.NATTraversal = "force"
		}
		cc.Tunnels[fmt.Sprintf("tunnel%d", i+1)] = ct
	}
	return cc
}

func phaseFrom(p ike.Phase) config.Phase {
	var out config.Phase
	for _, e := range p.Encryption {
		out.Encryption = append(out.Encryption, encryptionName[e])
	}
	for _, i := range p.Integrity {
		out.Integrity = append(out.Integrity, integrityName[i])
	}
	out.DHGroups = p.DHGroups
	out.Lifetime = int(p.Lifetime.Seconds())
	return out
}
