// Package appliance is the box as a whole: it holds every subsystem of torided (the configuration store, the
// orchestrator and its components, the management API) and wires them together. Nothing outside cmd/ and tests/
// imports it.
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
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"toride/appliance/api"
	"toride/appliance/certs"
	"toride/appliance/config"
	"toride/appliance/health"
	"toride/appliance/secrets"
	"toride/appliance/store"
	"toride/appliance/timesync"
	"toride/dataplane/link"
	"toride/dataplane/nft"
	"toride/dataplane/route"
	"toride/dataplane/sysctl"
	"toride/ike"
	"toride/sslvpn"
	"toride/sslvpn/pki"
	"toride/sslvpn/userauth"
)

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
	sys     *systemSettings
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
	sys := &systemSettings{
		links: links, routes: routes,
		hostname:    os.Hostname,
		setHostname: func(n string) error { return unix.Sethostname([]byte(n)) },
		resolvConf:  opts.ResolvConf,
		setSysctl:   sysctl.Set,
		health:      s.health, log: s.log.With("component", "system"),
	}
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
	totp := &totpSteps{path: filepath.Join(opts.StateDir, "sslvpn", "totp-steps.json"), log: s.log.With("component", "sslvpn")}
	vpn := &sslvpnComponent{
		conc:   sslvpn.New(sslvpn.Options{Links: links, Logger: s.log.With("component", "sslvpn"), Auth: userauth.Options{Replay: totp}}),
		ledger: ledger, stateDir: opts.StateDir, health: s.health, log: s.log.With("component", "sslvpn"),
	}
	validate := func(c *config.Config) config.Problems {
		ps := config.Validate(c)
		return append(ps, vpn.checkCRLs(c, s.committedCRL)...)
	}
	s.store, err = store.Open(store.Options{Dir: filepath.Join(opts.StateDir, "config"), Applier: s.orch, Default: config.Default(),
		Logger: s.log.With("component", "store"), Validate: validate, Secrets: sealedSecrets{sealer}})
	if err != nil {
		links.Close()
		routes.Close()
		return nil, err
	}
	if notices := s.store.Notices(); len(notices) > 0 {
		// Loud and lasting: the admin must look at what the store found, not only at the log.
		s.health.Set("config", health.Degraded, strings.Join(notices, "; "))
	}
	firewall, err := nft.New(nft.Options{})
	if err != nil {
		return nil, err
	}
	ipsec := &ipsecComponent{health: s.health, log: s.log.With("component", "ipsec"), opts: ike.Opts{
		RunDir:   filepath.Join(filepath.Dir(opts.APISocket), "ike"),
		Firewall: firewall,
		Logger:   s.log.With("component", "ipsec"),
	}}
	ts := &timeSync{health: s.health}
	topts := timesync.Options{Logger: s.log.With("component", "ntp"), OnStatus: ts.report}
	if opts.ManageClock {
		topts.Clock = timesync.SystemClock{}
	}
	ts.syncer = timesync.New(topts)
	s.api = api.New(api.Options{Store: s.store, Health: s.health, Version: opts.Version, Logger: s.log.With("component", "api"),
		Status: func() map[string]any { return map[string]any{"ntp": ts.syncer.Status()} }})
	(&fjcloud{store: s.store, vpn: vpn}).register(s.api)
	(&ipsecAPI{store: s.store, comp: ipsec}).register(s.api)
	s.api.HandleFunc("GET /api/v1/sslvpn/status", func(*http.Request) (any, error) {
		return map[string]any{"servers": vpn.conc.Status(), "logins": vpn.conc.Auth().Counters()}, nil
	})
	s.api.HandleFunc("GET /api/v1/sslvpn/sessions", func(*http.Request) (any, error) {
		list := vpn.conc.Sessions("")
		if list == nil {
			list = []sslvpn.SessionInfo{}
		}
		return map[string]any{"sessions": list}, nil
	})
	https := &apiHTTPS{handler: s.api.Handler(), stateDir: opts.StateDir, health: s.health, log: s.log.With("component", "api")}
	s.orch.components = []Component{sys, ts, ipsec, vpn, https}
	s.closers = []io.Closer{closerFunc(func() error { links.Close(); routes.Close(); return nil }),
		closerFunc(func() error { _ = firewall.Delete(context.Background()); return firewall.Close() }), sys, ts, ipsec, vpn, https}
	s.sys = sys
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
	if err := s.store.Boot(ctx); err != nil {
		// Boot is best effort: the API must come up so the admin can fix what failed.
		s.log.Error("some components failed to start with the saved configuration", "err", err)
	}
	s.sys.watch()
	s.log.Info("torided running", "revision", s.store.Commits()[0].Revision, "api_socket", s.opts.APISocket)
	err := s.api.ServeUnix(ctx, s.opts.APISocket, ready)
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
