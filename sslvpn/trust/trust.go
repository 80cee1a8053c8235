// Package trust decides whether an SSL-VPN client certificate is trusted right now: issued by one of the
// configured CAs, within its validity, and neither it nor any CA of its chain on a CRL. The CAs and CRLs are
// swapped atomically, so a new CRL takes effect on the very next handshake without a restart; Revoked lets the
// concentrator find the live sessions a new CRL cuts.
//
// A CRL whose next update has passed is stale. It stays in force: what it revokes stays revoked, and a certificate
// it does not list is accepted, as strongSwan's default ("relaxed") revocation policy does, rather than refusing
// every client as OpenSSL-based servers do. A late CRL upload then costs a warning (CRLInfo.Stale, which the
// appliance shows and logs), not an outage of every user, while nothing it revoked comes back.
//
// A Store is safe for concurrent use; its zero value trusts nothing.
package trust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Errors of a refused certificate.
var (
	ErrNoCertificate = errors.New("trust: the client sent no certificate")
	ErrRevoked       = errors.New("trust: certificate revoked")
	ErrUntrusted     = errors.New("trust: certificate not issued by a trusted CA")
)

// Store holds the trusted CAs and their CRLs.
type Store struct {
	cur atomic.Pointer[snapshot]
	now func() time.Time
}

type snapshot struct {
	pool    *x509.CertPool
	cas     []*x509.Certificate
	revoked map[string]map[string]time.Time // issuer's raw subject → serial (decimal) → revocation time
	crls    []CRLInfo
}

// CRLInfo describes a loaded CRL, for status.
type CRLInfo struct {
	Issuer     string    `json:"issuer"`
	Number     string    `json:"number,omitempty"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Revoked    int       `json:"revoked"`
	// Stale says the next update has passed: the CRL stays in force, but a newer one is overdue.
	Stale bool `json:"stale"`
}

// Set replaces the trusted CAs and CRLs at once. Every CRL must be signed by one of the CAs.
func (s *Store) Set(cas []*x509.Certificate, crls []*x509.RevocationList) error {
	snap := &snapshot{pool: x509.NewCertPool(), cas: cas, revoked: map[string]map[string]time.Time{}}
	for _, ca := range cas {
		snap.pool.AddCert(ca)
	}
	for _, crl := range crls {
		var issuer *x509.Certificate
		for _, ca := range cas {
			if crl.CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
		if issuer == nil {
			return fmt.Errorf("trust: the CRL of %s is not signed by a trusted CA", crl.Issuer)
		}
		key := string(issuer.RawSubject)
		if snap.revoked[key] == nil {
			snap.revoked[key] = map[string]time.Time{}
		}
		for _, e := range crl.RevokedCertificateEntries {
			snap.revoked[key][e.SerialNumber.String()] = e.RevocationTime
		}
		info := CRLInfo{Issuer: issuer.Subject.String(), ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate, Revoked: len(crl.RevokedCertificateEntries)}
		if crl.Number != nil {
			info.Number = crl.Number.String()
		}
		snap.crls = append(snap.crls, info)
	}
	s.cur.Store(snap)
	return nil
}

func (s *Store) snap() *snapshot {
	if p := s.cur.Load(); p != nil {
		return p
	}
	return &snapshot{pool: x509.NewCertPool()}
}

// Pool returns the trusted CAs, for tls.Config.ClientCAs: their subjects go into the TLS CertificateRequest, so a
// client picks a certificate that fits.
func (s *Store) Pool() *x509.CertPool { return s.snap().pool }

// CRLs describes the loaded CRLs as they stand now (a CRL turns stale when its next update passes).
func (s *Store) CRLs() []CRLInfo {
	now := s.clock()
	out := slices.Clone(s.snap().crls)
	for i := range out {
		out[i].Stale = !out[i].NextUpdate.IsZero() && now.After(out[i].NextUpdate)
	}
	return out
}

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// Revoked says why a client certificate is revoked now, or returns nil. chains are its verified chains, leaf
// first, as crypto/tls gives them (ConnectionState.VerifiedChains): a chain is revoked when the leaf or any CA
// certificate in it is on its issuer's CRL, and the certificate when every one of its chains is (one clean path
// to a trusted CA is a valid path, e.g. through a re-issued intermediate). The error wraps ErrRevoked.
func (s *Store) Revoked(chains [][]*x509.Certificate) error {
	return s.snap().revokedChains(chains, 0)
}

// revokedChains is Revoked over the certificates of each chain from index from on (1: the CAs only).
func (snap *snapshot) revokedChains(chains [][]*x509.Certificate, from int) error {
	var first error
	for _, chain := range chains {
		err := snap.revokedChain(chain, from)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func (snap *snapshot) revokedChain(chain []*x509.Certificate, from int) error {
	for i := from; i < len(chain); i++ {
		c := chain[i]
		when, ok := snap.revoked[string(c.RawIssuer)][c.SerialNumber.String()]
		if !ok {
			continue
		}
		at := when.UTC().Format(time.RFC3339)
		if i == 0 {
			return fmt.Errorf("%w: %s serial %X, revoked %s", ErrRevoked, c.Subject, c.SerialNumber, at)
		}
		return fmt.Errorf("%w: %s is issued under the CA %s (serial %X), revoked %s by %s", ErrRevoked,
			chain[0].Subject, c.Subject, c.SerialNumber, at, c.Issuer)
	}
	return nil
}

// Verify checks a client's certificate chain (leaf first) as it stands now: a trusted issuer, validity, client
// auth usage, and no revocation of any certificate in the chain. It returns the verified leaf.
func (s *Store) Verify(chain []*x509.Certificate) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, ErrNoCertificate
	}
	snap := s.snap()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verified, err := chain[0].Verify(x509.VerifyOptions{Roots: snap.pool, Intermediates: inter, CurrentTime: s.clock(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("%w: %s (issuer %s)", ErrUntrusted, chain[0].Subject, chain[0].Issuer)
		}
		return nil, fmt.Errorf("trust: certificate %s: %w", chain[0].Subject, err)
	}
	if err := snap.revokedChains(verified, 0); err != nil {
		return nil, err
	}
	return chain[0], nil
}

// ServerConfig returns a TLS server configuration presenting cert that verifies client certificates against the
// CAs as they are at each handshake (their names go into the CertificateRequest). required says whether a
// certificate is needed. crypto/tls verifies the chain, so an expired certificate or an unknown issuer is refused
// with the matching TLS alert, which the client logs. A revoked client certificate is left to the protocol's
// admission (Verify or Revoked), so the client is told in words that its certificate is revoked rather than
// getting a bare "bad certificate" alert. A revoked CA in the chain, though, fails the handshake itself (a bad
// certificate alert, and the reason in the server's handshake error), so no protocol path can let a whole revoked
// branch of a PKI in; Revoked still covers it for the live sessions a new CRL cuts.
func (s *Store) ServerConfig(cert tls.Certificate, required bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if required {
		auth = tls.RequireAndVerifyClientCert
	}
	base := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   auth,
		// No resumption: a resumed session would skip the certificate check against CAs changed since, and
		// neither protocol needs it (OpenVPN never resumes; AnyConnect reconnects with its cookie). It also
		// keeps the per-handshake configuration consistent with callers that disable tickets on their copy.
		SessionTicketsDisabled: true,
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		snap := s.snap()
		c.ClientCAs = snap.pool
		c.VerifyConnection = func(cs tls.ConnectionState) error { return snap.revokedChains(cs.VerifiedChains, 1) }
		return c, nil
	}
	return base
}
