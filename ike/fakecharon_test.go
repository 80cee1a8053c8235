package ike

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"toride/dataplane/nft"
	"toride/ike/charon"
	"toride/ike/internal/icmpprobe"
	"toride/ike/internal/vici"
)

// fakeCharon is charon in memory, as the engine sees it through its supervisor and VICI: loaded connections and
// secrets, IKE_SAs and CHILD_SAs with charon's unique ids (handed out when a negotiation starts, not when it
// installs), and the events it raises. Nothing happens by itself: the test decides when a negotiation completes,
// in which order installs are announced, when an SA dies, when the VICI socket drops and when charon restarts.
//
// It also knows which tunnel the traffic leaves by (carrier), whatever order the events came in: on
// kernel-libipsec, of the net CHILD_SAs with equal selectors the one installed last; on kernel-netlink the one
// installed first. A rekey keeps its predecessor's place.
//
// Not safe for concurrent use: the engine under test runs on the test's goroutine.
type fakeCharon struct {
	kernel  bool // kernel-netlink instead of kernel-libipsec
	now     func() time.Time
	health  charon.Health
	changes chan struct{}

	conns   map[string]vici.Conn
	shared  map[string]vici.Shared
	ikes    []*fakeIKE
	pending []*fakeInit // initiations not completed yet, oldest first

	nextIKE, nextChild, nextReqID, installs uint64

	session *fakeSession // the engine's session, if it has one
	calls   []string     // what the engine asked, in order: "initiate aws-t1/aws-t1-net", "load-conn aws-t1", …
}

type fakeIKE struct {
	name     string
	uniqueID uint64
	version  int
	state    string
	children []*fakeChild
}

type fakeChild struct {
	name        string
	uniqueID    uint64
	reqID       uint64
	installedAt time.Time
	installSeq  uint64 // the place of its policies in libipsec's list: higher is newer
}

// fakeInit is an initiation charon is negotiating: its CHILD_SA's unique id is already taken.
type fakeInit struct {
	ike      *fakeIKE
	child    string
	uniqueID uint64
}

func newFakeCharon(now func() time.Time) *fakeCharon {
	f := &fakeCharon{now: now, changes: make(chan struct{}, 1)}
	f.reset()
	f.start()
	return f
}

func (f *fakeCharon) reset() {
	f.conns, f.shared, f.ikes, f.pending = map[string]vici.Conn{}, map[string]vici.Shared{}, nil, nil
}

func (f *fakeCharon) signal() {
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

// start makes a new charon process run: nothing loaded, no SAs, and the old process's VICI session gone.
func (f *fakeCharon) start() {
	f.reset()
	f.dropSession()
	f.health.State = charon.StateRunning
	f.health.Since = f.now()
	f.health.Starts++
	f.health.PID = 1000 + f.health.Starts
	f.signal()
}

// exit is charon dying: every SA and the VICI session go with it, and the supervisor says so.
func (f *fakeCharon) exit() {
	f.reset()
	f.dropSession()
	f.health.State = charon.StateRestarting
	f.health.PID = 0
	f.signal()
}

// dropSession closes the engine's VICI session (the socket broke) while charon keeps running.
func (f *fakeCharon) dropSession() {
	if f.session != nil && !f.session.closed {
		f.session.closed = true
		close(f.session.events)
	}
	f.session = nil
}

// The supervisor's side (charonProcess).

func (f *fakeCharon) Health() charon.Health    { return f.health }
func (f *fakeCharon) Socket() string           { return "/fake/charon.vici" }
func (f *fakeCharon) Changes() <-chan struct{} { return f.changes }
func (f *fakeCharon) dial(context.Context, string) (charonSession, error) {
	if f.health.State != charon.StateRunning {
		return nil, errors.New("vici: connect: no such file or directory")
	}
	f.dropSession()
	f.session = &fakeSession{f: f, events: make(chan vici.Event, 64)}
	return f.session, nil
}

// announce raises events on the engine's session; like govici, it drops what the session has no room for.
func (f *fakeCharon) announce(evs ...vici.Event) {
	for _, ev := range evs {
		if f.session == nil || !f.session.subscribed {
			continue
		}
		select {
		case f.session.events <- ev:
		default:
		}
	}
}

func (f *fakeCharon) ikeByName(name string) *fakeIKE {
	for _, sa := range f.ikes {
		if sa.name == name {
			return sa
		}
	}
	return nil
}

func (f *fakeCharon) listed(sa *fakeIKE, children ...*fakeChild) vici.IKESA {
	out := vici.IKESA{Name: sa.name, UniqueID: sa.uniqueID, Version: sa.version, State: sa.state,
		ChildSAs: map[string]vici.ChildSA{}}
	for _, c := range children {
		out.ChildSAs[fmt.Sprintf("%s-%d", c.name, c.uniqueID)] = c.listed(f.now())
	}
	return out
}

func (c *fakeChild) listed(now time.Time) vici.ChildSA {
	return vici.ChildSA{Name: c.name, UniqueID: c.uniqueID, ReqID: c.reqID, State: "INSTALLED",
		InstallTime: int64(now.Sub(c.installedAt) / time.Second)}
}

// pendingFor returns the oldest initiation of child on tunnel, failing the test if there is none.
func (f *fakeCharon) pendingFor(t testing.TB, tunnel, child string) *fakeInit {
	t.Helper()
	for _, p := range f.pending {
		if p.ike.name == tunnel && p.child == child {
			return p
		}
	}
	t.Fatalf("charon negotiates no %s on %s; pending: %v", child, tunnel, f.pendingNames())
	return nil
}

func (f *fakeCharon) pendingNames() []string {
	var out []string
	for _, p := range f.pending {
		out = append(out, fmt.Sprintf("%s/%s#%d", p.ike.name, p.child, p.uniqueID))
	}
	return out
}

// install completes an initiation without announcing it, and returns the events charon raises for it: the
// IKE_SA's ike-updown if this established it, and the child-updown.
func (f *fakeCharon) install(p *fakeInit) []vici.Event {
	f.pending = slices.DeleteFunc(f.pending, func(q *fakeInit) bool { return q == p })
	var evs []vici.Event
	if p.ike.state != "ESTABLISHED" {
		p.ike.state = "ESTABLISHED"
		evs = append(evs, vici.Event{Name: "ike-updown", Up: true, SAs: []vici.IKESA{f.listed(p.ike)}})
	}
	f.nextReqID++
	f.installs++
	c := &fakeChild{name: p.child, uniqueID: p.uniqueID, reqID: f.nextReqID, installedAt: f.now(), installSeq: f.installs}
	p.ike.children = append(p.ike.children, c)
	evs = append(evs, vici.Event{Name: "child-updown", Up: true, SAs: []vici.IKESA{f.listed(p.ike, c)}})
	return evs
}

// complete installs and announces every pending initiation, oldest first.
func (f *fakeCharon) complete() {
	for len(f.pending) > 0 {
		f.announce(f.install(f.pending[0])...)
	}
}

// rekey replaces a CHILD_SA with its rekeyed successor (same reqid, same place in libipsec's list) and returns
// the child-rekey event.
func (f *fakeCharon) rekey(t testing.TB, uniqueID uint64) vici.Event {
	t.Helper()
	for _, sa := range f.ikes {
		for i, c := range sa.children {
			if c.uniqueID != uniqueID {
				continue
			}
			f.nextChild++
			n := *c
			n.uniqueID, n.installedAt = f.nextChild, f.now()
			sa.children[i] = &n
			return vici.Event{Name: "child-rekey", Rekeys: []vici.ChildRekey{{IKE: sa.name,
				Old: c.listed(f.now()), New: n.listed(f.now())}}}
		}
	}
	t.Fatalf("no CHILD_SA %d to rekey", uniqueID)
	return vici.Event{}
}

// killIKE is a tunnel's IKE_SA dying (DPD, a DELETE from the peer): it goes with its CHILD_SAs and charon says so.
func (f *fakeCharon) killIKE(name string) {
	for _, sa := range f.ikes {
		if sa.name == name {
			f.deleteIKE(sa)
			return
		}
	}
}

func (f *fakeCharon) deleteIKE(sa *fakeIKE) {
	f.ikes = slices.DeleteFunc(f.ikes, func(s *fakeIKE) bool { return s == sa })
	f.pending = slices.DeleteFunc(f.pending, func(p *fakeInit) bool { return p.ike == sa })
	for _, c := range sa.children {
		f.announce(vici.Event{Name: "child-updown", SAs: []vici.IKESA{f.listed(sa, c)}})
	}
	f.announce(vici.Event{Name: "ike-updown", SAs: []vici.IKESA{f.listed(sa)}})
}

// nets returns a tunnel's installed net CHILD_SAs.
func (f *fakeCharon) nets(tunnel string) []*fakeChild {
	var out []*fakeChild
	if sa := f.ikeByName(tunnel); sa != nil {
		for _, c := range sa.children {
			if strings.HasSuffix(c.name, "-net") {
				out = append(out, c)
			}
		}
	}
	return out
}

// carrier returns the index among tunnels of the one whose net CHILD_SA carries the traffic, or -1 when none has
// one: on libipsec the one installed last (its policies come first), on kernel-netlink the one installed first
// (the kernel's policy stays bound to the first SA that installed it).
func (f *fakeCharon) carrier(tunnels []string) int {
	var best uint64
	idx := -1
	for i, name := range tunnels {
		for _, c := range f.nets(name) {
			if idx < 0 || (!f.kernel && c.installSeq > best) || (f.kernel && c.installSeq < best) {
				best, idx = c.installSeq, i
			}
		}
	}
	return idx
}

// callsSince returns the calls made after the first n that start with prefix.
func (f *fakeCharon) callsSince(n int, prefix string) []string {
	var out []string
	for _, c := range f.calls[n:] {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// fakeSession is one VICI session of the engine with the fake charon.
type fakeSession struct {
	f          *fakeCharon
	events     chan vici.Event
	subscribed bool
	closed     bool
}

var errFakeSessionClosed = errors.New("vici: session closed")

func (s *fakeSession) call(format string, args ...any) error {
	if s.closed {
		return errFakeSessionClosed
	}
	s.f.calls = append(s.f.calls, fmt.Sprintf(format, args...))
	return nil
}

func (s *fakeSession) Subscribe(context.Context) (<-chan vici.Event, error) {
	if err := s.call("subscribe"); err != nil {
		return nil, err
	}
	s.subscribed = true
	return s.events, nil
}

func (s *fakeSession) ListSAs(context.Context) ([]vici.IKESA, error) {
	if s.closed {
		return nil, errFakeSessionClosed
	}
	var out []vici.IKESA
	for _, sa := range s.f.ikes {
		out = append(out, s.f.listed(sa, sa.children...))
	}
	return out, nil
}

func (s *fakeSession) ListConns(context.Context) ([]string, error) {
	if s.closed {
		return nil, errFakeSessionClosed
	}
	names := make([]string, 0, len(s.f.conns))
	for n := range s.f.conns {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (s *fakeSession) GetShared(context.Context) ([]string, error) {
	if s.closed {
		return nil, errFakeSessionClosed
	}
	ids := make([]string, 0, len(s.f.shared))
	for id := range s.f.shared {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (s *fakeSession) LoadConn(_ context.Context, name string, conn vici.Conn) error {
	if err := s.call("load-conn %s", name); err != nil {
		return err
	}
	s.f.conns[name] = conn
	return nil
}

// UnloadConn removes a connection; as in charon, its SAs stay.
func (s *fakeSession) UnloadConn(_ context.Context, name string) error {
	if err := s.call("unload-conn %s", name); err != nil {
		return err
	}
	if _, ok := s.f.conns[name]; !ok {
		return fmt.Errorf("vici: unload-conn: connection '%s' not found", name)
	}
	delete(s.f.conns, name)
	return nil
}

func (s *fakeSession) LoadShared(_ context.Context, sh vici.Shared) error {
	if err := s.call("load-shared %s", sh.ID); err != nil {
		return err
	}
	s.f.shared[sh.ID] = sh
	return nil
}

func (s *fakeSession) UnloadShared(_ context.Context, id string) error {
	if err := s.call("unload-shared %s", id); err != nil {
		return err
	}
	if _, ok := s.f.shared[id]; !ok {
		return fmt.Errorf("vici: unload-shared: shared secret '%s' not found", id)
	}
	delete(s.f.shared, id)
	return nil
}

// Initiate starts negotiating child on connection ike (and the IKE_SA if there is none): charon hands out the
// CHILD_SA's unique id now; the test decides when it installs.
func (s *fakeSession) Initiate(_ context.Context, ike, child string) error {
	if err := s.call("initiate %s/%s", ike, child); err != nil {
		return err
	}
	conn, ok := s.f.conns[ike]
	if !ok {
		return fmt.Errorf("vici: initiate: no config named '%s'", ike)
	}
	if _, ok := conn.Children[child]; !ok {
		return fmt.Errorf("vici: initiate: no CHILD_SA config named '%s'", child)
	}
	sa := s.f.ikeByName(ike)
	if sa == nil {
		s.f.nextIKE++
		version := 2
		if conn.Version == "1" {
			version = 1
		}
		sa = &fakeIKE{name: ike, uniqueID: s.f.nextIKE, version: version, state: "CONNECTING"}
		s.f.ikes = append(s.f.ikes, sa)
	}
	s.f.nextChild++
	s.f.pending = append(s.f.pending, &fakeInit{ike: sa, child: child, uniqueID: s.f.nextChild})
	return nil
}

// TerminateIKE deletes an IKE_SA at once (the engine always forces).
func (s *fakeSession) TerminateIKE(_ context.Context, id uint64, force bool) error {
	if err := s.call("terminate-ike %d", id); err != nil {
		return err
	}
	for _, sa := range s.f.ikes {
		if sa.uniqueID == id {
			s.f.deleteIKE(sa)
			return nil
		}
	}
	return fmt.Errorf("vici: terminate: no IKE_SA %d", id)
}

func (s *fakeSession) TerminateChild(_ context.Context, id uint64) error {
	if err := s.call("terminate-child %d", id); err != nil {
		return err
	}
	for _, sa := range s.f.ikes {
		for i, c := range sa.children {
			if c.uniqueID == id {
				sa.children = slices.Delete(sa.children, i, i+1)
				s.f.announce(vici.Event{Name: "child-updown", SAs: []vici.IKESA{s.f.listed(sa, c)}})
				return nil
			}
		}
	}
	return fmt.Errorf("vici: terminate: no CHILD_SA %d", id)
}

func (s *fakeSession) Close() error {
	if s.f.session == s {
		s.f.dropSession()
	}
	s.closed = true
	return nil
}

// fakeProber stands for one tunnel's ICMP prober; the test reports its results.
type fakeProber struct {
	cfg     icmpprobe.Config
	report  func(icmpprobe.Result)
	enabled bool
	closed  bool
}

func (p *fakeProber) SetEnabled(on bool) { p.enabled = on }
func (p *fakeProber) Close() error       { p.closed = true; return nil }

// fakeAddrs records the inside addresses the engine wants on the loopback.
type fakeAddrs struct{ have []netip.Addr }

func (a *fakeAddrs) sync(want []netip.Addr) error {
	a.have = slices.SortedFunc(slices.Values(want), netip.Addr.Compare)
	return nil
}
func (a *fakeAddrs) close() {}

// fakeFirewall records the engine's rules.
type fakeFirewall struct {
	rules  []nft.Rule
	clamps []nft.Clamp
}

func (fw *fakeFirewall) Set(_ context.Context, owner string, rules []nft.Rule) error {
	if owner != FirewallOwner {
		return fmt.Errorf("owner %q", owner)
	}
	fw.rules = rules
	return nil
}

func (fw *fakeFirewall) SetClamps(_ context.Context, owner string, clamps []nft.Clamp) error {
	if owner != ClampOwner {
		return fmt.Errorf("owner %q", owner)
	}
	fw.clamps = clamps
	return nil
}

// sortedCalls sorts calls for comparison where their order does not matter.
func sortedCalls(calls []string) []string {
	return slices.SortedFunc(slices.Values(calls), cmp.Compare[string])
}
