// Package sslvpnsvc is the appliance's SSL-VPN: the "sslvpn" component, which gives the concentrator (sslvpn)
// the configuration's servers with what their settings only name (users, CAs and CRLs in force, certificates,
// tls-crypt keys), keeps CRLs from going backwards, and serves /api/v1/sslvpn (status, sessions).
//
// Locking: the component's mu is held across an apply, by the committer, a ledger change (Refresh) and the CRL
// timer alike.
package sslvpnsvc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"toride/appliance/atomicfile"
	"toride/appliance/certs"
	"toride/appliance/config"
	"toride/appliance/health"
	"toride/sslvpn"
	"toride/sslvpn/pki"
	"toride/sslvpn/userauth"
)

// serverCertValidity is how long a server certificate the appliance issues itself lasts; it is renewed a month
// before it ends.
const serverCertValidity = 2 * 365 * 24 * time.Hour

// Component is the "sslvpn" component: it turns the configuration into the concentrator's servers. Safe for
// concurrent use.
type Component struct {
	conc     *sslvpn.Concentrator
	firewall Firewall // nil: no source NAT (tests without a kernel table)
	ledger   *certs.Ledger
	stateDir string
	health   *health.Tracker
	log      *slog.Logger

	mu       sync.Mutex
	applied  *config.Config
	crlTimer *time.Timer // re-applies when the next CRL's next update passes
	closed   bool
}

// Options are what the component needs.
type Options struct {
	TUN      sslvpn.TUNMaker  // the servers' TUN devices (dataplane/tun.Kernel on the appliance)
	Links    sslvpn.Addresser // the TUN devices' addresses
	Ledger   *certs.Ledger    // certificates the appliance issued, and their revocations
	StateDir string           // torided's state directory: sslvpn/ holds the tls-crypt keys and the TOTP steps
	Firewall Firewall         // the full-tunnel clients' source NAT
	Health   *health.Tracker
	Logger   *slog.Logger
}

// New returns the component and its concentrator, serving nothing until Apply.
func New(o Options) *Component {
	totp := &totpSteps{path: filepath.Join(o.StateDir, "sslvpn", "totp-steps.json"), log: o.Logger}
	return &Component{
		conc:   sslvpn.New(sslvpn.Options{TUN: o.TUN, Links: o.Links, Logger: o.Logger, Auth: userauth.Options{Replay: totp}}),
		ledger: o.Ledger, stateDir: o.StateDir, health: o.Health, log: o.Logger, firewall: o.Firewall,
	}
}

// Concentrator is the concentrator the component drives.
func (c *Component) Concentrator() *sslvpn.Concentrator { return c.conc }

// Ledger is the ledger of the certificates the appliance issued.
func (c *Component) Ledger() *certs.Ledger { return c.ledger }

// Name implements the orchestrator's Component.
func (c *Component) Name() string { return "sslvpn" }

// Apply implements Component.
func (c *Component) Apply(ctx context.Context, _, new *config.Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applyLocked(ctx, new)
}

func (c *Component) applyLocked(ctx context.Context, cfg *config.Config) error {
	want, warnings, err := c.build(cfg)
	if err != nil {
		return err
	}
	if err := c.conc.Set(ctx, want); err != nil {
		return err
	}
	if c.firewall != nil {
		if err := c.firewall.SetMasquerades(ctx, "sslvpn", masquerades(want)); err != nil {
			return err
		}
	}
	c.applied = cfg
	for _, w := range warnings {
		c.log.Warn(w)
	}
	c.armCRLTimer(want)
	switch {
	case len(want.Servers) == 0:
		c.health.Remove(c.Name())
	case len(warnings) > 0:
		c.health.Set(c.Name(), health.Degraded, strings.Join(warnings, "; "))
	default:
		c.health.Set(c.Name(), health.OK, fmt.Sprintf("%d server(s)", len(want.Servers)))
	}
	return nil
}

// Refresh applies the running configuration again: after the ledger changed (a revocation), so the new CRL takes
// effect and the revoked sessions are cut.
func (c *Component) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.applied == nil {
		return nil
	}
	return c.applyLocked(ctx, c.applied)
}

// armCRLTimer makes the component apply again when the first CRL in force reaches its next update: the CRLs it
// makes from the ledger are then made afresh, and a loaded CRL that turned stale is reported (health and log)
// without waiting for the next commit. c.mu must be held.
func (c *Component) armCRLTimer(want sslvpn.Config) {
	if c.crlTimer != nil {
		c.crlTimer.Stop()
		c.crlTimer = nil
	}
	now := time.Now()
	var next time.Time
	for _, sc := range want.Servers {
		for _, crl := range sc.CRLs {
			if nu := crl.NextUpdate; nu.After(now) && (next.IsZero() || nu.Before(next)) {
				next = nu
			}
		}
	}
	if next.IsZero() {
		return
	}
	c.crlTimer = time.AfterFunc(next.Sub(now)+time.Second, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || c.applied == nil {
			return
		}
		if err := c.applyLocked(context.Background(), c.applied); err != nil {
			c.log.Error("applying the SSL-VPN again at a CRL's next update failed", "err", err)
		}
	})
}

// Close stops every server.
func (c *Component) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.crlTimer != nil {
		c.crlTimer.Stop()
	}
	c.mu.Unlock()
	c.conc.Close()
	return nil
}

// build makes the concentrator's configuration: each server's settings decide most of it (ServerConfig); the
// component adds what the settings only name (users, CAs and CRLs, certificates, tls-crypt keys). Problems that do not stop a server (a user's OTP key that does
// not open) come back as warnings.
func (c *Component) build(cfg *config.Config) (sslvpn.Config, []string, error) {
	var out sslvpn.Config
	var warnings []string
	users := map[string]sslvpn.User{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Users)) {
		u := cfg.Users[name]
		su := sslvpn.User{PasswordHash: string(u.PasswordHash), Disabled: u.Disable}
		if u.OTPKey != "" {
			key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(string(u.OTPKey), "="))
			if err != nil {
				// A key that did not open at start is kept as it was stored, which is no base32.
				warnings = append(warnings, fmt.Sprintf("user %s: the OTP key is not usable (it did not open, or is no base32); issue a new one", name))
			}
			su.OTPSecret = key
		}
		users[name] = su
	}
	localAddrs := map[netip.Addr]bool{}
	for _, ifc := range cfg.System.Interfaces {
		for _, a := range ifc.Addresses {
			localAddrs[a.Addr()] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.SSLVPN.Servers)) {
		s := cfg.SSLVPN.Servers[name]
		if s.Disable {
			continue
		}
		svc := cfg.SSLVPN.Services[s.Service]
		sc := s.ServerConfig(name, svc, svc != nil && localAddrs[svc.ExternalAddress])
		sc.Users = users
		caNames := append([]string{s.CA}, s.TrustedCAs...)
		for _, caName := range caNames {
			caCert, crls, crlWarnings, err := c.trustOf(cfg, caName)
			if err != nil {
				return out, nil, fmt.Errorf("sslvpn server %s: %w", name, err)
			}
			sc.CAs = append(sc.CAs, caCert)
			sc.CRLs = append(sc.CRLs, crls...)
			for _, w := range crlWarnings {
				if !slices.Contains(warnings, w) { // a CA trusted by several servers is told once
					warnings = append(warnings, w)
				}
			}
		}
		cert, err := c.serverCertificate(cfg, name, s, svc)
		if err != nil {
			return out, nil, fmt.Errorf("sslvpn server %s: %w", name, err)
		}
		sc.Certificate = cert
		if !s.OpenVPN.Disable && s.OpenVPN.TLSCrypt {
			key, err := c.TLSCryptKey(name)
			if err != nil {
				return out, nil, fmt.Errorf("sslvpn server %s: tls-crypt key: %w", name, err)
			}
			sc.OpenVPN.TLSCrypt = key
		}
		out.Servers = append(out.Servers, sc)
	}
	return out, warnings, nil
}

// trustOf returns a CA's certificate and the CRLs that apply to it: the CRL in force for it (the configuration's,
// or a newer one the appliance had in force before: see certs.Ledger.KeepNewerCRL), and, for a CA the appliance
// issues with, the one made from the ledger's revocations. Warnings say when the configuration's CRL is not the
// one in force, and when the one in force is stale.
func (c *Component) trustOf(cfg *config.Config, caName string) (*x509.Certificate, []*x509.RevocationList, []string, error) {
	ca := cfg.PKI.CAs[caName]
	if ca == nil {
		return nil, nil, nil, fmt.Errorf("no pki ca %q", caName)
	}
	cert, err := pki.ParseCertificate(ca.Certificate)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki ca %s: %w", caName, err)
	}
	var crls []*x509.RevocationList
	var warnings []string
	var inForce *x509.RevocationList
	if ca.CRL != "" {
		crl, err := pki.ParseCRL([]byte(ca.CRL))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("pki ca %s crl: %w", caName, err)
		}
		if inForce, err = c.ledger.KeepNewerCRL(caName, cert, crl); err != nil {
			return nil, nil, nil, fmt.Errorf("pki ca %s crl: %w", caName, err)
		}
		if inForce != crl {
			warnings = append(warnings, fmt.Sprintf("pki ca %s: the configuration's CRL (%s) is older than the CRL in force (%s), which stays in force so that nothing it revokes comes back; load %s's newest CRL",
				caName, pki.DescribeCRL(crl), pki.DescribeCRL(inForce), cert.Subject))
		}
	} else {
		if inForce, err = c.ledger.CRLInForce(caName, cert); err != nil {
			return nil, nil, nil, fmt.Errorf("pki ca %s crl: %w", caName, err)
		}
		if inForce != nil {
			warnings = append(warnings, fmt.Sprintf("pki ca %s: the configuration holds no CRL; the CRL in force (%s) stays in force so that nothing it revokes comes back; load %s's newest CRL",
				caName, pki.DescribeCRL(inForce), cert.Subject))
		}
	}
	if inForce != nil {
		crls = append(crls, inForce)
		if nu := inForce.NextUpdate; !nu.IsZero() && time.Now().After(nu) {
			warnings = append(warnings, fmt.Sprintf("pki ca %s: the CRL in force (%s) is stale since %s (its next update): what it revokes stays revoked and certificates it does not list are accepted; load %s's current CRL (PUT …/crl)",
				caName, pki.DescribeCRL(inForce), nu.UTC().Format(time.RFC3339), cert.Subject))
		}
	}
	if ca.PrivateKey != "" {
		crl, err := c.ledgerCRL(cfg, caName)
		if err != nil {
			return nil, nil, nil, err
		}
		if crl != nil {
			crls = append(crls, crl)
		}
	}
	return cert, crls, warnings, nil
}

// CheckCRLs refuses a configuration whose CRL for a CA is older than the one in force, unless the configuration
// has held that CRL before (seenBefore: a rollback or a commit-confirm's revert brings it back, and the newer one
// simply stays in force, with a warning). A CRL never goes backwards: an older one would un-revoke certificates.
func (c *Component) CheckCRLs(cfg *config.Config, seenBefore func(caName string, crl *x509.RevocationList) bool) config.Problems {
	var ps config.Problems
	for _, name := range slices.Sorted(maps.Keys(cfg.PKI.CAs)) {
		ca := cfg.PKI.CAs[name]
		if ca.CRL == "" {
			continue
		}
		cert, err1 := pki.ParseCertificate(ca.Certificate)
		crl, err2 := pki.ParseCRL([]byte(ca.CRL))
		if err1 != nil || err2 != nil {
			continue // config.Validate reports it
		}
		if problem := c.OlderThanInForce(name, cert, crl); problem != "" && !seenBefore(name, crl) {
			ps = append(ps, config.Problem{Path: "pki.ca." + name + ".crl", Value: cert.Subject.String() + " CRL " + pki.DescribeCRL(crl),
				Message: problem, Fix: fmt.Sprintf("load %s's newest CRL", cert.Subject)})
		}
	}
	return ps
}

// OlderThanInForce says how crl is older than the CRL in force for caName, or returns "".
func (c *Component) OlderThanInForce(caName string, ca *x509.Certificate, crl *x509.RevocationList) string {
	inForce, err := c.ledger.CRLInForce(caName, ca)
	if err != nil || inForce == nil || pki.CompareCRLs(crl, inForce) >= 0 {
		return ""
	}
	return fmt.Sprintf("this CRL (%s, issued %s) is older than the CRL in force (%s, issued %s); a CRL never goes backwards, it would un-revoke certificates",
		pki.DescribeCRL(crl), crl.ThisUpdate.UTC().Format(time.RFC3339), pki.DescribeCRL(inForce), inForce.ThisUpdate.UTC().Format(time.RFC3339))
}

// ledgerCRL makes the CRL of an appliance CA's revocations (nil when there are none).
func (c *Component) ledgerCRL(cfg *config.Config, caName string) (*x509.RevocationList, error) {
	revs, err := c.ledger.Revocations(caName)
	if err != nil || len(revs) == 0 {
		return nil, err
	}
	text, err := c.ledgerCRLPEM(cfg, caName, revs)
	if err != nil {
		return nil, err
	}
	return pki.ParseCRL([]byte(text))
}

func (c *Component) ledgerCRLPEM(cfg *config.Config, caName string, revs []pki.Revocation) (string, error) {
	ca, err := pki.ParseCA(cfg.PKI.CAs[caName].Certificate, string(cfg.PKI.CAs[caName].PrivateKey))
	if err != nil {
		return "", fmt.Errorf("pki ca %s: %w", caName, err)
	}
	// The CRL number must grow with every CRL: the newest revocation's time does, and stays the same for the same
	// list of revocations.
	newest := revs[0].Time
	for _, r := range revs {
		if r.Time.After(newest) {
			newest = r.Time
		}
	}
	return ca.CRL(revs, big.NewInt(newest.UnixNano()), 30*24*time.Hour)
}

// serverCertificate returns the server's certificate: the configured one, or one its CA issued, renewed when it
// nears its end or no longer names the server's address.
func (c *Component) serverCertificate(cfg *config.Config, name string, s *sslvpn.ServerSettings, svc *sslvpn.ServiceSettings) (tls.Certificate, error) {
	if s.Certificate != "" {
		pc := cfg.PKI.Certificates[s.Certificate]
		return tls.X509KeyPair([]byte(pc.Certificate), []byte(pc.PrivateKey))
	}
	caCfg := cfg.PKI.CAs[s.CA]
	ca, err := pki.ParseCA(caCfg.Certificate, string(caCfg.PrivateKey))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki ca %s: %w", s.CA, err)
	}
	var addrs []netip.Addr
	if svc != nil && svc.ExternalAddress.IsValid() {
		addrs = append(addrs, svc.ExternalAddress)
	}
	names := []string{cfg.System.HostName}
	if cfg.System.DomainName != "" {
		names = append(names, cfg.System.HostName+"."+cfg.System.DomainName)
	}
	if e, err := c.ledger.Latest(s.CA, certs.Server, name); err == nil && time.Until(e.NotAfter) > 30*24*time.Hour {
		if leaf, err := pki.ParseCertificate(e.CertPEM); err == nil && certNames(leaf, names, addrs) && leaf.CheckSignatureFrom(ca.Cert) == nil {
			key, err := c.ledger.Key(s.CA, e)
			if err == nil {
				return tls.X509KeyPair([]byte(e.CertPEM), []byte(key))
			}
		}
	}
	e, err := c.ledger.Issue(s.CA, certs.Server, name, func() (pki.Issued, error) {
		return ca.IssueServer(names[len(names)-1], names, addrs, serverCertValidity)
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	c.log.Info("issued a server certificate", "server", name, "ca", s.CA, "serial", e.Serial, "names", names, "addresses", addrs)
	key, err := c.ledger.Key(s.CA, e)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair([]byte(e.CertPEM), []byte(key))
}

func certNames(leaf *x509.Certificate, names []string, addrs []netip.Addr) bool {
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	for _, a := range addrs {
		found := false
		for _, ip := range leaf.IPAddresses {
			if b, ok := netip.AddrFromSlice(ip); ok && b.Unmap() == a {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TLSCryptKey returns a server's tls-crypt key, made on first use and kept in the state directory (it goes into
// every client configuration, so it is a shared secret, not a sealed one).
func (c *Component) TLSCryptKey(server string) ([]byte, error) {
	path := filepath.Join(c.stateDir, "sslvpn", server+".tls-crypt.key")
	if key, err := os.ReadFile(path); err == nil {
		return key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, 256)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("-----BEGIN OpenVPN Static key V1-----\n")
	for i := 0; i < len(raw); i += 16 {
		b.WriteString(hex.EncodeToString(raw[i:i+16]) + "\n")
	}
	b.WriteString("-----END OpenVPN Static key V1-----\n")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
