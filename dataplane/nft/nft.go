// Package nft keeps torided's own nftables table in step with what its components want, through netlink
// (github.com/google/nftables), never the nft command.
//
// The table (inet "toride" by default) belongs to torided alone: other tables are never read or touched. Each
// component owns a named chain in it ("ike", later "sslvpn") and states its rules declaratively with Set; the
// input base chain jumps to the owners' chains in name order. Every Set re-creates the whole table in one netlink
// batch (add, delete, add, fill), which the kernel applies atomically: no packet ever sees a half-written table.
//
//	table inet toride
//	  chain input  (hook input, priority filter, policy accept)
//	    jump ike
//	    jump sslvpn
//	  chain ike    rules of owner "ike", in order
//	  chain sslvpn rules of owner "sslvpn"
//	  chain forward     (hook forward, priority mangle)  the owners' MSS clamps
//	  chain postrouting (hook postrouting, nat, srcnat)  the owners' masquerades
//
// The base chain's policy is accept: the table only adds guards (accept what is listed, drop what a Drop rule
// names); the appliance's general policy lives elsewhere.
//
// A Manager is safe for concurrent use. Its zero value is not usable: call New.
package nft

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sync"

	"toride/dataplane/internal/ifname"
)

// ErrNFT is wrapped by every error of this package.
var ErrNFT = errors.New("nft")

// Protocol is a layer-4 protocol number.
type Protocol uint8

// The protocols rules can match.
const (
	ProtoTCP Protocol = 6
	ProtoUDP Protocol = 17
	ProtoESP Protocol = 50
)

func (p Protocol) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoESP:
		return "esp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Verdict is what a matching rule does.
type Verdict uint8

// The verdicts.
const (
	Accept Verdict = iota
	Drop
)

// Rule matches inbound packets by protocol, destination ports and source prefixes.
type Rule struct {
	// Comment is stored with the rule (visible in `nft list ruleset`).
	Comment string
	// Protocol is required.
	Protocol Protocol
	// Ports are destination ports (TCP and UDP only); empty matches any port.
	Ports []uint16
	// Sources are source prefixes (IPv4 or IPv6); empty matches any source.
	Sources []netip.Prefix
	Verdict Verdict
}

// Clamp lowers the TCP MSS option of SYNs forwarded into or out of an interface to MSS, and never raises it: the
// segments of connections through a tunnel then fit its MTU without fragmenting (the cloud's file asks for 1379).
type Clamp struct {
	Interface string
	MSS       uint16
}

func (c Clamp) check() error {
	if err := ifname.Check(c.Interface); err != nil {
		return err
	}
	if c.MSS < 536 || c.MSS > 65495 {
		return fmt.Errorf("MSS %d on %s: want 536 to 65495", c.MSS, c.Interface)
	}
	return nil
}

// Masquerade rewrites the source of forwarded IPv4 packets from Source to the address of the interface they leave
// by (source NAT), unless they go to one of Exempt (networks that must see the clients' own addresses, and the
// clients themselves): a full-tunnel client's Internet traffic leaves from the box's uplink address.
type Masquerade struct {
	Source netip.Prefix
	Exempt []netip.Prefix
}

func (m Masquerade) check() error {
	if !m.Source.IsValid() || !m.Source.Addr().Is4() {
		return fmt.Errorf("masquerade source %v: want an IPv4 network", m.Source)
	}
	for _, e := range m.Exempt {
		if !e.IsValid() || !e.Addr().Is4() {
			return fmt.Errorf("masquerade exemption %v: want an IPv4 network", e)
		}
	}
	return nil
}

// state is everything the table holds, per owner.
type state struct {
	rules  map[string][]Rule
	clamps map[string][]Clamp
	masqs  map[string][]Masquerade
}

// owners returns every owner with rules, in name order (the input chain jumps to them in this order).
func (s state) owners() []string {
	owners := make([]string, 0, len(s.rules))
	for k := range s.rules {
		owners = append(owners, k)
	}
	slices.Sort(owners)
	return owners
}

// allMasquerades returns every owner's masquerades, owners in name order.
func (s state) allMasquerades() []Masquerade {
	var out []Masquerade
	for _, owner := range slices.Sorted(maps.Keys(s.masqs)) {
		out = append(out, s.masqs[owner]...)
	}
	return out
}

// allClamps returns every owner's clamps, owners in name order.
func (s state) allClamps() []Clamp {
	var out []Clamp
	for _, owner := range slices.Sorted(maps.Keys(s.clamps)) {
		out = append(out, s.clamps[owner]...)
	}
	return out
}

func (s state) clone() state {
	return state{rules: maps.Clone(s.rules), clamps: maps.Clone(s.clamps), masqs: maps.Clone(s.masqs)}
}

// Options configure a Manager.
type Options struct {
	// NetnsPath is the network namespace file to work in; "" is the caller's.
	NetnsPath string
	// Table is the table's name in family inet; "" means "toride".
	Table string
}

// Manager owns one nftables table.
type Manager struct {
	opts Options
	mu   sync.Mutex
	st   state // as last applied
	back backend
}

// backend is the kernel side; the Linux one talks netlink.
type backend interface {
	apply(table string, st state) error
	remove(table string) error
	close() error
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,23}$`)

// New returns a Manager; it changes nothing until the first Set.
func New(opts Options) (*Manager, error) {
	if opts.Table == "" {
		opts.Table = "toride"
	}
	if !nameRE.MatchString(opts.Table) {
		return nil, fmt.Errorf("%w: bad table name %q", ErrNFT, opts.Table)
	}
	b, err := newBackend(opts.NetnsPath)
	if err != nil {
		return nil, err
	}
	return &Manager{opts: opts, st: emptyState(), back: b}, nil
}

// Set replaces the rules of owner and rewrites the table atomically. An owner with no rules keeps an empty chain.
// If the kernel rejects the batch, the previous table stays in force and the owner's previous rules are kept.
func (m *Manager) Set(ctx context.Context, owner string, rules []Rule) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	for i, r := range rules {
		if err := r.check(); err != nil {
			return fmt.Errorf("%w: %s rule %d: %w", ErrNFT, owner, i, err)
		}
	}
	return m.apply(func(next state) { next.rules[owner] = slices.Clone(rules) })
}

// SetClamps replaces the MSS clamps of owner and rewrites the table atomically, as Set does.
func (m *Manager) SetClamps(ctx context.Context, owner string, clamps []Clamp) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	for _, c := range clamps {
		if err := c.check(); err != nil {
			return fmt.Errorf("%w: %s clamp: %w", ErrNFT, owner, err)
		}
	}
	return m.apply(func(next state) { next.clamps[owner] = slices.Clone(clamps) })
}

// SetMasquerades replaces the source NAT of owner and rewrites the table atomically, as Set does.
func (m *Manager) SetMasquerades(ctx context.Context, owner string, masqs []Masquerade) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	for _, mq := range masqs {
		if err := mq.check(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNFT, owner, err)
		}
	}
	return m.apply(func(next state) { next.masqs[owner] = slices.Clone(masqs) })
}

func emptyState() state {
	return state{rules: map[string][]Rule{}, clamps: map[string][]Clamp{}, masqs: map[string][]Masquerade{}}
}

func checkOwner(owner string) error {
	if !nameRE.MatchString(owner) || owner == "input" || owner == "forward" || owner == "postrouting" {
		return fmt.Errorf("%w: bad owner name %q", ErrNFT, owner)
	}
	return nil
}

// apply writes the table as change makes it from the current state; on failure the current state stays.
func (m *Manager) apply(change func(state)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.back == nil {
		return fmt.Errorf("%w: manager closed", ErrNFT)
	}
	next := m.st.clone()
	change(next)
	if err := m.back.apply(m.opts.Table, next); err != nil {
		return fmt.Errorf("%w: apply table %s: %w", ErrNFT, m.opts.Table, err)
	}
	m.st = next
	return nil
}

// Rules returns a copy of owner's current rules.
func (m *Manager) Rules(owner string) []Rule {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.st.rules[owner])
}

// Delete removes the table (if present) and forgets every owner's rules.
func (m *Manager) Delete(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.back == nil {
		return fmt.Errorf("%w: manager closed", ErrNFT)
	}
	if err := m.back.remove(m.opts.Table); err != nil {
		return fmt.Errorf("%w: delete table %s: %w", ErrNFT, m.opts.Table, err)
	}
	m.st = emptyState()
	return nil
}

// Close releases the netlink resources; the table stays as it is. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.back == nil {
		return nil
	}
	err := m.back.close()
	m.back = nil
	return err
}

func (r Rule) check() error {
	switch r.Protocol {
	case ProtoTCP, ProtoUDP:
	case ProtoESP:
		if len(r.Ports) > 0 {
			return errors.New("ESP has no ports")
		}
	default:
		return fmt.Errorf("unsupported protocol %d", r.Protocol)
	}
	if r.Verdict != Accept && r.Verdict != Drop {
		return fmt.Errorf("unknown verdict %d", r.Verdict)
	}
	for _, p := range r.Sources {
		if !p.IsValid() {
			return errors.New("invalid source prefix")
		}
	}
	if len(r.Comment) > 128 {
		return errors.New("comment longer than 128 bytes")
	}
	return nil
}
