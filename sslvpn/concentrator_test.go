package sslvpn

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"toride/dataplane/tun/tuntest"
	"toride/sslvpn/anyconnect"
	"toride/sslvpn/datapath"
	"toride/sslvpn/internal/icmptest"
	"toride/sslvpn/openvpn"
	"toride/sslvpn/pki"
	"toride/sslvpn/pool"
)

// testConcentrator is a Concentrator over in-memory TUN devices, with a fake of the links that records the
// addresses the servers give their devices.
type testConcentrator struct {
	*Concentrator
	tuns  *tuntest.Devices
	links *fakeLinks
}

func newTestConcentrator(t *testing.T) *testConcentrator {
	t.Helper()
	tuns := &tuntest.Devices{}
	links := &fakeLinks{tuns: tuns, addrs: map[*tuntest.Device][]netip.Prefix{}, up: map[*tuntest.Device]bool{}}
	c := New(Options{TUN: tuns, Links: links, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(c.Close)
	return &testConcentrator{Concentrator: c, tuns: tuns, links: links}
}

// start runs cfg (named "main", pool 10.8.0.0/24 unless it says otherwise) as the concentrator's only server.
func (tc *testConcentrator) start(t *testing.T, cfg *ServerConfig) *Server {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "main"
	}
	if !cfg.Pool.IsValid() {
		cfg.Pool = netip.MustParsePrefix("10.8.0.0/24")
	}
	if err := tc.Set(context.Background(), Config{Servers: []*ServerConfig{cfg}}); err != nil {
		t.Fatal(err)
	}
	return tc.server(cfg.Name)
}

func (tc *testConcentrator) server(name string) *Server {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.servers[name]
}

// fakeLinks is the Addresser: it addresses only devices that are open, as the kernel would.
type fakeLinks struct {
	tuns *tuntest.Devices

	mu    sync.Mutex
	addrs map[*tuntest.Device][]netip.Prefix
	up    map[*tuntest.Device]bool
	fail  error // the next AddAddress's
}

func (l *fakeLinks) AddAddress(name string, p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fail; err != nil {
		l.fail = nil
		return err
	}
	dev := l.tuns.Get(name)
	if dev == nil {
		return errors.New("no such device " + name)
	}
	l.addrs[dev] = append(l.addrs[dev], p)
	return nil
}

func (l *fakeLinks) SetUp(name string, up bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	dev := l.tuns.Get(name)
	if dev == nil {
		return errors.New("no such device " + name)
	}
	l.up[dev] = up
	return nil
}

func (l *fakeLinks) failNext(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = err
}

// addresses are the device's addresses, sorted, and whether it is up.
func (l *fakeLinks) addresses(dev *tuntest.Device) ([]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range l.addrs[dev] {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out, l.up[dev]
}

var ovpnIDs atomic.Uint64

// ovpnClient is an OpenVPN engine session as the core sees it: it keeps the packets it is sent and the reasons
// it is closed with, and, as the engine does, ends (Disconnected) when it is first closed.
type ovpnClient struct {
	b       *openvpnBackend
	id      uint64
	remote  netip.AddrPort
	packets chan []byte
	busy    atomic.Bool // its traffic grows at every look, as a session in use does
	traffic atomic.Uint64

	mu     sync.Mutex
	closed []string
}

func (c *ovpnClient) ID() uint64                   { return c.id }
func (c *ovpnClient) Remote() netip.AddrPort       { return c.remote }
func (c *ovpnClient) Transport() openvpn.Transport { return openvpn.UDP }
func (c *ovpnClient) PeerID() uint32               { return uint32(c.id) }

func (c *ovpnClient) SendPacket(pkt []byte) bool {
	select {
	case c.packets <- slices.Clone(pkt):
		return true
	default:
		return false
	}
}

func (c *ovpnClient) Stats() openvpn.SessionStats {
	if c.busy.Load() {
		return openvpn.SessionStats{BytesIn: c.traffic.Add(100)}
	}
	return openvpn.SessionStats{BytesIn: c.traffic.Load()}
}

func (c *ovpnClient) reasons() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.closed)
}

func (c *ovpnClient) Close(reason string) {
	c.mu.Lock()
	c.closed = append(c.closed, reason)
	first := len(c.closed) == 1
	c.mu.Unlock()
	if first {
		c.b.Disconnected(c, errors.New(reason))
	}
}

// connect logs user in over OpenVPN with a certificate: chain (leaf first), or a bare one issued to user.
func connect(s *Server, user string, chain ...*x509.Certificate) (*ovpnClient, *openvpn.Grant, error) {
	c := &ovpnClient{b: (*openvpnBackend)(s), id: ovpnIDs.Add(1), packets: make(chan []byte, 16)}
	c.remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(c.id)}), 40000)
	req := &openvpn.ConnectRequest{Remote: c.remote, Transport: openvpn.UDP, Cipher: "AES-256-GCM"}
	if len(chain) > 0 {
		req.PeerCertificates, req.VerifiedChains = chain, [][]*x509.Certificate{chain}
	} else {
		req.PeerCertificates = []*x509.Certificate{certOf(user)}
	}
	g, err := c.b.Connect(context.Background(), req, c)
	return c, g, err
}

// connectAnyConnect logs user in over AnyConnect with a certificate and opens the tunnel, as the engine does in
// two steps.
func connectAnyConnect(s *Server, user string) (*fakeACSession, error) {
	b := (*anyconnectBackend)(s)
	remote := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 1}), 40000)
	id, err := b.Authenticate(context.Background(), &anyconnect.AuthRequest{Remote: remote, Group: defaultGroup, Certificate: certOf(user)})
	if err != nil {
		return nil, err
	}
	as := &fakeACSession{id: ovpnIDs.Add(1), ident: id}
	as.grant, err = b.Connect(context.Background(), &anyconnect.ConnectRequest{Remote: remote, Group: defaultGroup, Identity: id}, as)
	return as, err
}

func mustConnect(t *testing.T, s *Server, user string, chain ...*x509.Certificate) (*ovpnClient, *openvpn.Grant) {
	t.Helper()
	c, g, err := connect(s, user, chain...)
	if err != nil {
		t.Fatalf("%s connects: %v", user, err)
	}
	return c, g
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerTUNDevice: a server makes its device, addresses it in each of its pools and brings it up; a
// configuration it can apply in place leaves the device alone, a restart makes a new one, and a server that goes
// removes its device, and every goroutine it ran.
func TestServerTUNDevice(t *testing.T) {
	before := runtime.NumGoroutine()
	tc := newTestConcentrator(t)
	ctx := context.Background()
	cfg := func(pool string, maxSessions int) Config {
		return Config{Servers: []*ServerConfig{{Name: "main", Pool: netip.MustParsePrefix(pool), MaxSessions: maxSessions,
			Groups: []*GroupConfig{{Name: "partners", Pool: netip.MustParsePrefix("10.9.0.0/24")}}}}}
	}
	check := func(step string, made int, want []string) {
		t.Helper()
		if got := tc.tuns.Open(); !slices.Equal(got, []string{"vpn-main"}) || tc.tuns.Made() != made {
			t.Fatalf("%s: open devices %v, %d made; want [vpn-main], %d made", step, got, tc.tuns.Made(), made)
		}
		got, up := tc.links.addresses(tc.tuns.Get("vpn-main"))
		if diff := cmp.Diff(got, want); diff != "" || !up {
			t.Fatalf("%s: vpn-main up %v, addresses (-got +want):\n%s", step, up, diff)
		}
		if st := tc.Status(); len(st) != 1 || st[0].TUN != "vpn-main" {
			t.Fatalf("%s: status %+v", step, st)
		}
	}
	if err := tc.Set(ctx, cfg("10.8.0.0/24", 10)); err != nil {
		t.Fatal(err)
	}
	check("started", 1, []string{"10.8.0.1/24", "10.9.0.1/24"})
	first := tc.tuns.Get("vpn-main")
	for _, step := range []struct {
		what string
		cfg  Config
	}{{"the same configuration again", cfg("10.8.0.0/24", 10)}, {"a new session limit", cfg("10.8.0.0/24", 20)}} {
		if err := tc.Set(ctx, step.cfg); err != nil {
			t.Fatal(err)
		}
		check(step.what, 1, []string{"10.8.0.1/24", "10.9.0.1/24"})
	}
	if err := tc.Set(ctx, cfg("10.10.0.0/24", 20)); err != nil {
		t.Fatal(err)
	}
	check("a new pool", 2, []string{"10.10.0.1/24", "10.9.0.1/24"})
	if !first.Closed() {
		t.Fatal("the restarted server's first device is still open")
	}
	if err := tc.Set(ctx, Config{}); err != nil {
		t.Fatal(err)
	}
	if got := tc.tuns.Open(); len(got) != 0 {
		t.Fatalf("devices open without a server: %v", got)
	}
	waitUntil(t, "the servers' goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestTUNNamesAreUnique: servers whose names make the same 15-character device name each get their own.
func TestTUNNamesAreUnique(t *testing.T) {
	tc := newTestConcentrator(t)
	var servers []*ServerConfig
	for i, name := range []string{"Branch-Office-A", "branch office b", "main"} {
		servers = append(servers, &ServerConfig{Name: name, Pool: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 8, byte(i), 0}), 24), MaxSessions: 1})
	}
	if err := tc.Set(context.Background(), Config{Servers: servers}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tc.tuns.Open(), []string{"vpn-branch-off2", "vpn-branch-offi", "vpn-main"}); diff != "" {
		t.Fatalf("devices (-got +want):\n%s", diff)
	}
}

// TestStartFailureLeavesNoDevice: a server that cannot get its device, or cannot address it, does not start and
// leaves no device behind; the next Set starts it.
func TestStartFailureLeavesNoDevice(t *testing.T) {
	tc := newTestConcentrator(t)
	cfg := Config{Servers: []*ServerConfig{{Name: "main", Pool: netip.MustParsePrefix("10.8.0.0/24"), MaxSessions: 1}}}
	noTUN, noAddress := errors.New("no /dev/net/tun"), errors.New("address refused")
	for _, step := range []struct {
		what string
		fail func()
		want error
		made int
	}{
		{"no device", func() { tc.tuns.FailNext(noTUN) }, noTUN, 0},
		{"no address", func() { tc.links.failNext(noAddress) }, noAddress, 1},
	} {
		step.fail()
		if err := tc.Set(context.Background(), cfg); !errors.Is(err, step.want) {
			t.Fatalf("%s: Set: %v, want %v", step.what, err, step.want)
		}
		if got := tc.tuns.Open(); len(got) != 0 || tc.tuns.Made() != step.made || len(tc.Status()) != 0 {
			t.Fatalf("%s: devices %v open, %d made, status %+v", step.what, got, tc.tuns.Made(), tc.Status())
		}
	}
	if err := tc.Set(context.Background(), cfg); err != nil || !slices.Equal(tc.tuns.Open(), []string{"vpn-main"}) {
		t.Fatalf("after the failures: %v, devices %v", err, tc.tuns.Open())
	}
}

// TestSessionTrafficThroughTheDevice: an admitted session gets an address of the pool; the LAN's packets for it,
// read from the device, reach it; its packets from its own address to the network it was given are written to
// the device, from any other address refused, and so are those to a network it was not given, to another client,
// and, after a commit that takes its network away, to that network too. Once it ends, its address has no route
// and is free.
func TestSessionTrafficThroughTheDevice(t *testing.T) {
	tc := newTestConcentrator(t)
	cfg := &ServerConfig{MaxSessions: 10, Routes: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/24")}}
	s := tc.start(t, cfg)
	dev := tc.tuns.Get("vpn-main")
	alice, g := mustConnect(t, s, "alice")
	gw, addr := netip.MustParseAddr("10.8.0.1"), g.Address.Addr()
	if g.Address.Bits() != 24 || g.Gateway != gw || !netip.MustParsePrefix("10.8.0.0/24").Contains(addr) || addr == gw {
		t.Fatalf("granted %v via %v", g.Address, g.Gateway)
	}
	if sessions := tc.Sessions("main"); len(sessions) != 1 || sessions[0].Address != addr.String() || sessions[0].User != "alice" {
		t.Fatalf("sessions %+v", sessions)
	}

	lan := netip.MustParseAddr("10.50.0.7")
	toAlice := icmptest.EchoRequest(lan, addr, 1, 32)
	if err := dev.Deliver(toAlice); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-alice.packets:
		if diff := cmp.Diff(got, toAlice); diff != "" {
			t.Fatalf("alice got (-got +want):\n%s", diff)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the LAN's packet never reached alice")
	}

	fromAlice := icmptest.EchoRequest(addr, lan, 2, 32)
	if err := g.Uplink.WritePacket(fromAlice); err != nil {
		t.Fatal(err)
	}
	go g.Uplink.Flush() // as the engine does at the end of what it read; the test device waits for the test
	select {
	case got := <-dev.Written:
		if diff := cmp.Diff(got, fromAlice); diff != "" {
			t.Fatalf("written to the device (-got +want):\n%s", diff)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's packet never reached the device")
	}
	if err := g.Uplink.WritePacket(icmptest.EchoRequest(netip.MustParseAddr("10.8.0.99"), lan, 3, 32)); !errors.Is(err, datapath.ErrSpoofed) {
		t.Fatalf("a packet from another address: %v", err)
	}
	for _, dst := range []string{"10.60.0.7", "10.8.0.99"} {
		if err := g.Uplink.WritePacket(icmptest.EchoRequest(addr, netip.MustParseAddr(dst), 4, 32)); !errors.Is(err, datapath.ErrForbidden) {
			t.Fatalf("a packet to %s, not given: %v", dst, err)
		}
	}
	if err := g.Uplink.WritePacket(icmptest.EchoRequest(addr, gw, 5, 32)); err != nil {
		t.Fatalf("a packet to the server's tunnel address: %v", err)
	}
	go g.Uplink.Flush()
	<-dev.Written
	taken := *cfg
	taken.Routes = []netip.Prefix{netip.MustParsePrefix("10.51.0.0/24")}
	if err := tc.Set(context.Background(), Config{Servers: []*ServerConfig{&taken}}); err != nil {
		t.Fatal(err)
	}
	if err := g.Uplink.WritePacket(fromAlice); !errors.Is(err, datapath.ErrForbidden) {
		t.Fatalf("a packet to the network the commit took away: %v", err)
	}
	if sessions := tc.Sessions("main"); len(sessions) != 1 || sessions[0].Forbidden != 3 {
		t.Fatalf("sessions %+v, want alice's with 3 forbidden packets", sessions)
	}

	alice.Close("client exit")
	if n := len(tc.Sessions("main")); n != 0 {
		t.Fatalf("%d sessions after alice's ended", n)
	}
	if err := dev.Deliver(toAlice); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the packet for alice's old address to find no route", func() bool { return tc.Status()[0].Datapath.NoRoute == 1 })
	if len(alice.packets) != 0 {
		t.Fatal("a session that ended still got packets")
	}
	if st := tc.Status()[0]; st.PoolInUse != 0 || st.Datapath.ToClients != 1 || st.Datapath.FromClients != 2 || st.Datapath.Spoofed != 1 ||
		st.Datapath.Forbidden != 3 {
		t.Fatalf("status %+v", st)
	}
}

// TestSessionLimits: the server's limit and each user's count sessions of every user and protocol, OpenVPN and
// AnyConnect alike; the pool's size limits too. Each refusal tells the client why, is counted by its reason, and a session's end frees its
// place.
func TestSessionLimits(t *testing.T) {
	tc := newTestConcentrator(t)
	// 10.8.0.0/29 in subnet topology: .1 is the server's, .2 to .6 its clients'.
	s := tc.start(t, &ServerConfig{Pool: netip.MustParsePrefix("10.8.0.0/29"), Topology: pool.Subnet, MaxSessions: 4,
		LimitName: "flavor small", MaxSessionsPerUser: 2})
	sessions := map[string][]*ovpnClient{}
	steps := []struct {
		user       string
		anyconnect bool
		refused    string // the reason, "" for admitted
		msg        string // in the client's message
	}{
		{"alice", false, "", ""},
		{"alice", true, "", ""},
		{"alice", false, RefusedUserLimit, "max-sessions-per-user 2"},
		{"alice", true, RefusedUserLimit, "max-sessions-per-user 2"},
		{"bob", false, "", ""},
		{"carol", true, "", ""},
		{"dave", false, RefusedLimit, "connection limit reached: 4 sessions (flavor small)"},
		{"dave", true, RefusedLimit, "connection limit reached: 4 sessions (flavor small)"},
	}
	for i, step := range steps {
		var c *ovpnClient
		var err error
		if step.anyconnect {
			_, err = connectAnyConnect(s, step.user)
		} else {
			c, _, err = connect(s, step.user)
		}
		if step.refused == "" {
			if err != nil {
				t.Fatalf("step %d: %s refused: %v", i, step.user, err)
			}
			sessions[step.user] = append(sessions[step.user], c)
			continue
		}
		var r *Refusal
		if !errors.As(err, &r) || r.Reason != step.refused || !strings.Contains(r.Msg, step.msg) {
			t.Fatalf("step %d: %s: %v, want refused as %s saying %q", i, step.user, err, step.refused, step.msg)
		}
	}
	if st := tc.Status()[0]; st.Sessions != 4 || st.PoolInUse != 4 || !counted(st.Refused, RefusedUserLimit, 2, RefusedLimit, 2) {
		t.Fatalf("status %+v", st)
	}

	// Bob leaves: dave gets his place, then the pool's last address; a sixth client finds none left.
	sessions["bob"][0].Close("client exit")
	mustConnect(t, s, "dave")
	tc.start(t, &ServerConfig{Pool: netip.MustParsePrefix("10.8.0.0/29"), Topology: pool.Subnet, MaxSessions: 10, MaxSessionsPerUser: 2})
	if tc.server("main") != s {
		t.Fatal("a new session limit restarted the server")
	}
	mustConnect(t, s, "erin")
	_, _, err := connect(s, "fred")
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != RefusedPool || !strings.Contains(r.Msg, "no free client address") {
		t.Fatalf("sixth client in a pool of five: %v", err)
	}
	if _, err := connectAnyConnect(s, "gina"); !errors.As(err, &r) || r.Reason != RefusedPool {
		t.Fatalf("sixth client in a pool of five, over AnyConnect: %v", err)
	}
	if st := tc.Status()[0]; st.Sessions != 5 || st.PoolInUse != 5 || st.PoolCapacity != 5 || st.Refused[RefusedPool] != 2 {
		t.Fatalf("status %+v", st)
	}
}

// counted reports whether m holds exactly the given key and count pairs.
func counted(m map[string]uint64, kv ...any) bool {
	want := map[string]uint64{}
	for i := 0; i < len(kv); i += 2 {
		want[kv[i].(string)] = uint64(kv[i+1].(int))
	}
	return cmp.Equal(m, want)
}

// TestCRLUpdateCutsRevokedSessions: a configuration with a new CRL cuts the live sessions of the certificates it
// revokes, and only those, and refuses them from then on.
func TestCRLUpdateCutsRevokedSessions(t *testing.T) {
	ca, _, _, err := pki.NewCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chain := func(user string) []*x509.Certificate {
		t.Helper()
		issued, err := ca.IssueClient(user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := pki.ParseCertificate(issued.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{leaf, ca.Cert}
	}
	aliceChain, bobChain := chain("alice"), chain("bob")
	cfg := &ServerConfig{MaxSessions: 10, CAs: []*x509.Certificate{ca.Cert}}
	tc := newTestConcentrator(t)
	s := tc.start(t, cfg)
	alice, _ := mustConnect(t, s, "alice", aliceChain...)
	bob, _ := mustConnect(t, s, "bob", bobChain...)

	crlPEM, err := ca.CRL([]pki.Revocation{{Serial: aliceChain[0].SerialNumber, Time: time.Now()}}, big.NewInt(1), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := pki.ParseCRL([]byte(crlPEM))
	if err != nil {
		t.Fatal(err)
	}
	next := *cfg
	next.CRLs = []*x509.RevocationList{crl}
	if err := tc.Set(context.Background(), Config{Servers: []*ServerConfig{&next}}); err != nil {
		t.Fatal(err)
	}
	if tc.server("main") != s || tc.tuns.Made() != 1 {
		t.Fatal("a new CRL restarted the server")
	}
	if got := alice.reasons(); !slices.Equal(got, []string{"certificate revoked"}) {
		t.Fatalf("alice's session closed with %q, want once with \"certificate revoked\"", got)
	}
	if got := bob.reasons(); len(got) != 0 {
		t.Fatalf("bob's session closed: %q", got)
	}
	if sessions := tc.Sessions("main"); len(sessions) != 1 || sessions[0].User != "bob" {
		t.Fatalf("sessions %+v", sessions)
	}
	_, _, err = connect(s, "alice", aliceChain...)
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != RefusedRevoked {
		t.Fatalf("alice again: %v, want refused as %s", err, RefusedRevoked)
	}
	if st := tc.Status()[0]; len(st.CRLs) != 1 || st.CRLs[0].Revoked != 1 || st.Refused[RefusedRevoked] != 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestTimeoutsEndSessions: the server's idle watcher ends a session without traffic after the idle timeout and
// leaves one with traffic alone, which the session time limit ends later.
func TestTimeoutsEndSessions(t *testing.T) {
	tc := newTestConcentrator(t)
	s := tc.start(t, &ServerConfig{MaxSessions: 10, IdleTimeout: 300 * time.Millisecond, SessionTimeout: 1500 * time.Millisecond})
	start := time.Now()
	quiet, _ := mustConnect(t, s, "quiet")
	busy, _ := mustConnect(t, s, "busy")
	busy.busy.Store(true)
	waitUntil(t, "the quiet session to end", func() bool { return len(quiet.reasons()) > 0 })
	if got, idle := quiet.reasons(), time.Since(start); !slices.Equal(got, []string{"idle timeout"}) || idle < 300*time.Millisecond {
		t.Fatalf("the quiet session closed with %q after %v, want \"idle timeout\" after 300ms", got, idle)
	}
	if got := busy.reasons(); len(got) != 0 {
		t.Fatalf("the busy session closed with %q", got)
	}
	waitUntil(t, "the busy session to end", func() bool { return len(busy.reasons()) > 0 })
	if got, after := busy.reasons(), time.Since(start); !slices.Equal(got, []string{"session time limit reached"}) || after < 1500*time.Millisecond {
		t.Fatalf("the busy session closed with %q after %v, want \"session time limit reached\" after 1.5s", got, after)
	}
	if n := len(tc.Sessions("")); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}
