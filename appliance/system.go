// Package appliance is the box as a whole: it holds every subsystem of torided and wires them together: the
// configuration store, the orchestrator (here) and its components, each in its own package (system: the host and
// its clock; ipsecsvc; sslvpnsvc; api's HTTPS listener), and the management API with the components' routes
// (api, ipsecsvc, sslvpnsvc, cloudapi). Nothing outside cmd/ and tests/ imports it.
//
// Data flow of a configuration change:
//
//	toride / REST ──► api ──► store (candidate) ──commit──► config.Validate
//	                                                   └──► Orchestrator.Apply(old, new)
//	                                                          system → api → (ipsec, sslvpn …)
//	                                                   └──► persist (atomic) + archive
//
// The store serializes commits; components are called by one committer at a time, plus their own watchers,
// which take the component's lock.
package appliance

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netns"

	"toride/appliance/api"
	"toride/appliance/certs"
	"toride/appliance/cloudapi"
	"toride/appliance/config"
	"toride/appliance/health"
	"toride/appliance/ipsecsvc"
	"toride/appliance/logring"
	"toride/appliance/metrics"
	"toride/appliance/secrets"
	"toride/appliance/sslvpnsvc"
	"toride/appliance/store"
	"toride/appliance/sysimage"
	"toride/appliance/system"
	"toride/dataplane/link"
	"toride/dataplane/nft"
	"toride/dataplane/route"
	"toride/dataplane/sysctl"
	"toride/dataplane/tun"
	"toride/ike"
	"toride/sslvpn"
	"toride/sslvpn/pki"
	"toride/sslvpn/userauth"
)

// logLines is how many recent log records torided keeps in memory for GET /api/v1/log.
const logLines = 2000

// Options configure a System.
type Options struct {
	StateDir   string // all persistent state (created 0700)
	APISocket  string // the management API's unix socket
	ResolvConf string // the resolver file torided writes ("" leaves it alone)
	// ManageClock lets torided set the system clock from NTP. Only the appliance image, which owns its machine,
	// sets it; elsewhere the offset is only measured and reported.
	ManageClock bool
	Version     string
	Logger      *slog.Logger
}

// System is one running appliance.
type System struct {
	opts    Options
	log     *slog.Logger
	health  *health.Tracker
	store   *store.Store
	orch    *Orchestrator
	api     *api.Server
	host    *system.Host
	image   *sysimage.Images
	closers []io.Closer // closed in reverse order
}

// New opens the state directory and builds every subsystem. Nothing is applied until Run.
func New(opts Options) (*System, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// Every record of info and above also goes to a ring that `toride show log` reads.
	ring := logring.New(logLines)
	opts.Logger = slog.New(ring.Handler(opts.Logger.Handler()))
	s := &System{opts: opts, log: opts.Logger, health: health.New()}
	links, err := link.Open(netns.None())
	if err != nil {
		return nil, err
	}
	routes, err := route.Open(netns.None())
	if err != nil {
		links.Close()
		return nil, err
	}
	host := system.NewHost(system.HostOptions{
		Links: links, Routes: routes,
		Hostname:    os.Hostname,
		SetHostname: system.SetKernelHostname,
		ResolvConf:  opts.ResolvConf,
		SetSysctl:   sysctl.Set,
		Health:      s.health, Logger: s.log.With("component", "system"),
	})
	s.orch = NewOrchestrator(s.health, s.log)
	sealer, err := secrets.Open(filepath.Join(opts.StateDir, "keys", "seal.key"))
	if err != nil {
		links.Close()
		routes.Close()
		return nil, err
	}
	// The SSL-VPN component exists before the store opens: validating the running configuration at Open
	// already asks it about the CRLs in force.
	ledger, err := certs.Open(filepath.Join(opts.StateDir, "pki"), sealer)
	if err != nil {
		links.Close()
		routes.Close()
		return nil, err
	}
	firewall, err := nft.New(nft.Options{})
	if err != nil {
		links.Close()
		routes.Close()
		return nil, err
	}
	vpn := sslvpnsvc.New(sslvpnsvc.Options{TUN: tun.Kernel{}, Links: links, Ledger: ledger, StateDir: opts.StateDir, Health: s.health,
		Firewall: firewall,
		Logger:   s.log.With("component", "sslvpn")})
	validate := func(c *config.Config) config.Problems {
		ps := config.Validate(c)
		return append(ps, vpn.CheckCRLs(c, s.committedCRL)...)
	}
	s.store, err = store.Open(store.Options{Dir: filepath.Join(opts.StateDir, "config"), Applier: s.orch, Default: config.Default(),
		Logger: s.log.With("component", "store"), Validate: validate, Secrets: secrets.ConfigCodec{Sealer: sealer}})
	if err != nil {
		links.Close()
		routes.Close()
		firewall.Close()
		return nil, err
	}
	if notices := s.store.Notices(); len(notices) > 0 {
		// Loud and lasting: the admin must look at what the store found, not only at the log.
		s.health.Set("config", health.Degraded, strings.Join(notices, "; "))
	}
	ipsec := ipsecsvc.New(ike.Opts{
		RunDir:   filepath.Join(filepath.Dir(opts.APISocket), "ike"),
		Firewall: firewall,
		Logger:   s.log.With("component", "ipsec"),
	}, s.health, s.log.With("component", "ipsec"))
	ts := system.NewTimeSync(s.health, s.log.With("component", "ntp"), opts.ManageClock)
	s.api = api.New(api.Options{Store: s.store, Health: s.health, Version: opts.Version, Logger: s.log.With("component", "api"),
		Status: func() map[string]any { return map[string]any{"ntp": ts.Status()} }})
	(&cloudapi.API{Store: s.store, VPN: vpn, Logger: s.log.With("component", "sslvpn")}).Register(s.api)
	ipsecAPI := &ipsecsvc.API{Store: s.store, Component: ipsec}
	ipsecAPI.Register(s.api)
	vpn.Register(s.api)
	metrics.New(metrics.Sources{
		Version: opts.Version,
		SSLVPN: func() ([]sslvpn.ServerStatus, []sslvpn.SessionInfo, userauth.Counters) {
			conc := vpn.Concentrator()
			return conc.Status(), conc.Sessions(""), conc.Auth().Counters()
		},
		IPsec:   ipsecAPI.Status,
		Commits: s.store.CommitCounts,
	}).Register(s.api)
	ring.Register(s.api)
	system.InterfacesAPI{List: system.ListInterfaces}.Register(s.api)
	s.image = sysimage.New(sysimage.ApplianceLayout())
	s.image.Register(s.api)
	https := api.NewHTTPSListener(api.HTTPSOptions{Handler: s.api.Handler(), StateDir: opts.StateDir, Health: s.health,
		Logger: s.log.With("component", "api")})
	s.orch.components = []Component{host, ts, ipsec, vpn, https}
	s.closers = []io.Closer{closerFunc(func() error { links.Close(); routes.Close(); return nil }),
		closerFunc(func() error { _ = firewall.Delete(context.Background()); return firewall.Close() }), host, ts, ipsec, vpn, https}
	s.host = host
	return s, nil
}

// committedCRL reports whether crl was caName's CRL in a configuration in the commit archive, the running one
// included: one the appliance has had in force, which a rollback may bring back.
func (s *System) committedCRL(caName string, crl *x509.RevocationList) bool {
	if s.store == nil {
		// store.Open is checking the running configuration: it is committed already, and a CRL older than
		// the one in force simply leaves the newer one in force (with a warning when it is applied).
		return true
	}
	for n := 0; ; n++ {
		cfg, _, err := s.store.Revision(n)
		if err != nil {
			return false
		}
		if ca := cfg.PKI.CAs[caName]; ca != nil && ca.CRL != "" {
			if old, err := pki.ParseCRL([]byte(ca.CRL)); err == nil && bytes.Equal(old.Raw, crl.Raw) {
				return true
			}
		}
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// Run applies the running configuration, serves the API until ctx ends, then stops every subsystem. ready, if
// not nil, is called once the API socket accepts requests.
func (s *System) Run(ctx context.Context, ready func()) error {
	bootErr := s.store.Boot(ctx)
	if bootErr != nil {
		// Boot is best effort: the API must come up so the admin can fix what failed.
		s.log.Error("some components failed to start with the saved configuration", "err", bootErr)
	}
	s.host.Watch()
	s.log.Info("torided running", "revision", s.store.Commits()[0].Revision, "api_socket", s.opts.APISocket)
	err := s.api.ServeUnix(ctx, s.opts.APISocket, func() {
		if ready != nil {
			ready()
		}
		// Healthy: serving, with the configuration applied. A trial boot of a new image is kept only then.
		if bootErr != nil {
			s.log.Warn("this boot is not kept as healthy: the saved configuration did not apply")
			return
		}
		if kept, err := s.image.Keep(); err != nil {
			s.log.Error("keeping this system image", "err", err)
		} else if kept {
			s.log.Info("the new system image came up healthy and is kept")
		}
	})
	s.close()
	return err
}

func (s *System) close() {
	s.store.Close()
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i].Close())
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error("stopping", "err", err)
	}
	s.log.Info("torided stopped")
}
