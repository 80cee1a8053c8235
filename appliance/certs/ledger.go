// Package certs is the ledger of the certificates the appliance's own CAs issued and revoked, one JSON file per
// CA in the state directory, and of the CRL in force for each CA (crl.go).
//
// It lives outside the configuration on purpose: a configuration rollback must never un-revoke a stolen device's
// certificate, so revocations only ever accumulate, and a CRL is only ever replaced by a newer one. The private keys of issued client certificates are kept
// sealed, so the client configuration download can inline them (as the cloud's SSL-VPN does).
//
// A Ledger is safe for concurrent use.
package certs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"toride/appliance/atomicfile"
	"toride/appliance/secrets"
	"toride/sslvpn/pki"
)

// ErrNone is a user without a usable certificate.
var ErrNone = errors.New("certs: no valid certificate issued to this user")

// Kinds of entries.
const (
	Client = "client"
	Server = "server"
)

// Entry is one issued certificate.
type Entry struct {
	Serial    string    `json:"serial"` // upper-case hex
	Kind      string    `json:"kind"`
	Subject   string    `json:"subject"` // the user, or the server's name
	CertPEM   string    `json:"certificate"`
	KeySealed string    `json:"key_sealed"`
	IssuedAt  time.Time `json:"issued_at"`
	NotAfter  time.Time `json:"not_after"`
	Revoked   time.Time `json:"revoked,omitzero"`
}

// Valid reports whether the entry can be used now.
func (e *Entry) Valid(now time.Time) bool { return e.Revoked.IsZero() && now.Before(e.NotAfter) }

// Ledger holds every CA's entries.
type Ledger struct {
	dir    string
	sealer *secrets.Sealer
	now    func() time.Time

	mu sync.Mutex
}

// Open returns the ledger kept in dir.
func Open(dir string, sealer *secrets.Sealer) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Ledger{dir: dir, sealer: sealer, now: time.Now}, nil
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func (l *Ledger) file(ca string) (string, error) {
	if !safeName.MatchString(ca) {
		return "", fmt.Errorf("certs: bad CA name %q", ca)
	}
	return filepath.Join(l.dir, ca+".json"), nil
}

func (l *Ledger) load(ca string) ([]Entry, error) {
	path, err := l.file(ca)
	if err != nil {
		return nil, err
	}
	data, err := readIfExists(path)
	if data == nil || err != nil {
		return nil, err
	}
	var out []Entry
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	return out, nil
}

func (l *Ledger) save(ca string, entries []Entry) error {
	path, _ := l.file(ca)
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// Entries returns a CA's entries, oldest first.
func (l *Ledger) Entries(ca string) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.load(ca)
}

// Issue records the certificate that issue makes (with the CA's key). subject is the user id for a client, the
// server's name for a server.
func (l *Ledger) Issue(caName, kind, subject string, issue func() (pki.Issued, error)) (Entry, error) {
	is, err := issue()
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Serial: fmt.Sprintf("%X", is.Serial), Kind: kind, Subject: subject, CertPEM: is.CertPEM,
		KeySealed: l.sealer.Seal([]byte(is.KeyPEM), keyContext(caName, is.Serial)), IssuedAt: l.now().UTC(), NotAfter: is.NotAfter.UTC()}
	l.mu.Lock()
	defer l.mu.Unlock()
	entries, err := l.load(caName)
	if err != nil {
		return Entry{}, err
	}
	if err := l.save(caName, append(entries, e)); err != nil {
		return Entry{}, err
	}
	return e, nil
}

func keyContext(ca string, serial *big.Int) string { return fmt.Sprintf("cert-key:%s:%X", ca, serial) }

// Key opens an entry's private key.
func (l *Ledger) Key(caName string, e Entry) (string, error) {
	serial, ok := new(big.Int).SetString(e.Serial, 16)
	if !ok {
		return "", fmt.Errorf("certs: bad serial %q", e.Serial)
	}
	k, err := l.sealer.Open(e.KeySealed, keyContext(caName, serial))
	return string(k), err
}

// Latest returns the newest valid certificate of a kind issued to subject.
func (l *Ledger) Latest(caName, kind, subject string) (Entry, error) {
	entries, err := l.Entries(caName)
	if err != nil {
		return Entry{}, err
	}
	now := l.now()
	for i := len(entries) - 1; i >= 0; i-- {
		if e := entries[i]; e.Kind == kind && e.Subject == subject && e.Valid(now) {
			return e, nil
		}
	}
	return Entry{}, ErrNone
}

// RevokeSubject revokes every unrevoked certificate of a kind issued to subject and returns them.
func (l *Ledger) RevokeSubject(caName, kind, subject string) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	entries, err := l.load(caName)
	if err != nil {
		return nil, err
	}
	var revoked []Entry
	now := l.now().UTC()
	for i := range entries {
		if e := &entries[i]; e.Kind == kind && e.Subject == subject && e.Revoked.IsZero() {
			e.Revoked = now
			revoked = append(revoked, *e)
		}
	}
	if len(revoked) == 0 {
		return nil, ErrNone
	}
	return revoked, l.save(caName, entries)
}

// Revocations lists a CA's revoked certificates, for its CRL.
func (l *Ledger) Revocations(caName string) ([]pki.Revocation, error) {
	entries, err := l.Entries(caName)
	if err != nil {
		return nil, err
	}
	var out []pki.Revocation
	for _, e := range entries {
		if !e.Revoked.IsZero() {
			serial, ok := new(big.Int).SetString(e.Serial, 16)
			if !ok {
				return nil, fmt.Errorf("certs: %s: bad serial %q", caName, e.Serial)
			}
			out = append(out, pki.Revocation{Serial: serial, Time: e.Revoked})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial.Cmp(out[j].Serial) < 0 })
	return out, nil
}

// Subjects lists the subjects with a valid certificate of a kind.
func (l *Ledger) Subjects(caName, kind string) ([]string, error) {
	entries, err := l.Entries(caName)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	now := l.now()
	for _, e := range entries {
		if e.Kind == kind && e.Valid(now) {
			seen[e.Subject] = true
		}
	}
	var out []string
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// String describes an entry for logs.
func (e Entry) String() string {
	return strings.Join([]string{e.Kind, e.Subject, "serial " + e.Serial}, " ")
}

// readIfExists reads a file of the ledger; a file that does not exist yet reads as nil, with no error.
func readIfExists(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
