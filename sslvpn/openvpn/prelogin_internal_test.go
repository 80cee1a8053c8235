package openvpn

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"toride/sslvpn/internal/udpsrc"
	"toride/sslvpn/openvpn/internal/tlscrypt"
	"toride/sslvpn/openvpn/internal/wire"
)

// fuzzKey is the tls-crypt key of the fuzz targets (the one the interop tests give the stock client).
func fuzzKey() *tlscrypt.Key {
	var k tlscrypt.Key
	for i := range k {
		k[i] = byte(i*31 + 7)
	}
	return &k
}

// fixedCookies makes the same cookies at every run, so fuzz seeds stay valid.
func fixedCookies() *resetCookies {
	return &resetCookies{mac: hmac.New(sha256.New, []byte("fixed cookie key for tests")), slot: 15}
}

// sentPackets is a PacketConn that only records what is written to it.
type sentPackets struct {
	net.PacketConn
	out [][]byte
	to  []net.Addr
}

func (p *sentPackets) WriteTo(b []byte, a net.Addr) (int, error) {
	p.out = append(p.out, append([]byte(nil), b...))
	p.to = append(p.to, a)
	return len(b), nil
}

var (
	fuzzNow  = time.Unix(1800000000, 0)
	fuzzFrom = netip.MustParseAddrPort("192.0.2.1:40000")
	fuzzSID  = wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}
)

// fuzzUDP is a UDP server's first-packet path on a fixed clock, without a socket.
func fuzzUDP(t testing.TB, tlsCfg *tls.Config, withTLSCrypt bool) (*udpServer, *sentPackets) {
	cfg := Config{TLS: tlsCfg}
	if withTLSCrypt {
		cfg.TLSCrypt = fuzzKey().Marshal()
	}
	srv, err := NewServer(cfg, nopBackend{})
	if err != nil {
		t.Fatal(err)
	}
	srv.first.now = func() time.Time { return fuzzNow }
	pc := &sentPackets{}
	conn, _ := udpsrc.New(pc)
	return &udpServer{srv: srv, conn: conn, cookies: fixedCookies()}, pc
}

// clientPacket is what a client would send: plain, or wrapped with the fuzz key at fuzzNow.
func clientPacket(tc *tlscrypt.Context, p wire.ControlPacket) []byte {
	if tc == nil {
		return p.Append(nil)
	}
	pkt, _ := tc.Wrap(nil, p.AppendHeader(nil), p.AppendBody(nil), fuzzNow)
	return pkt
}

// FuzzStatelessAnswer feeds arbitrary packets into a UDP server's path for clients without a session: hard
// resets are answered once, never with more bytes than they had, with a cookie that is valid and that a client
// echoing it gets a session with (once, with tls-crypt); nothing else is accepted unless it echoes a valid
// cookie. Nothing may panic.
func FuzzStatelessAnswer(f *testing.F) {
	cookie := fixedCookies().make(fuzzFrom, fuzzSID, fuzzNow)
	for _, tc := range []*tlscrypt.Context{nil, tlscrypt.New(fuzzKey(), false)} {
		withTLSCrypt := tc != nil
		f.Add(withTLSCrypt, clientPacket(tc, wire.ControlPacket{Opcode: wire.ControlHardResetClientV2, SessionID: fuzzSID}))
		f.Add(withTLSCrypt, clientPacket(tc, wire.ControlPacket{Opcode: wire.AckV1, SessionID: fuzzSID, NumAcks: 1, RemoteSessionID: cookie}))
		f.Add(withTLSCrypt, clientPacket(tc, wire.ControlPacket{Opcode: wire.ControlV1, SessionID: fuzzSID, NumAcks: 1,
			RemoteSessionID: cookie, MessageID: 1, Payload: []byte{0x16, 3, 1, 0, 5}}))
		f.Add(withTLSCrypt, clientPacket(tc, wire.ControlPacket{Opcode: wire.ControlV1, SessionID: fuzzSID, NumAcks: 2,
			Acks: [wire.MaxAcks]uint32{0, 7}, RemoteSessionID: cookie, MessageID: 1}))
	}
	tlsCfg := selfSigned(f)
	f.Fuzz(func(t *testing.T, withTLSCrypt bool, pkt []byte) {
		u, pc := fuzzUDP(t, tlsCfg, withTLSCrypt)
		op, _, sid, _, err := wire.ParseControlHeader(pkt)
		if err != nil {
			return
		}
		switch op {
		case wire.ControlHardResetClientV2:
			u.answerReset(pkt, fuzzFrom, udpsrc.Local{}, sid, fuzzNow)
			if len(pc.out) == 0 {
				return
			}
			ans := pc.out[0]
			if len(pc.out) > 1 || len(ans) > len(pkt) {
				t.Fatalf("%d answers, the first %d bytes, to a %d-byte reset", len(pc.out), len(ans), len(pkt))
			}
			var client *tlscrypt.Context
			if withTLSCrypt {
				client = tlscrypt.New(fuzzKey(), false)
				if _, err := client.Unwrap(nil, ans); err != nil {
					t.Fatalf("answer does not unwrap: %v", err)
				}
			}
			aop, _, cookie, _, err := wire.ParseControlHeader(ans)
			if err != nil || aop != wire.ControlHardResetServerV2 || !u.cookies.valid(cookie, fuzzFrom, sid, fuzzNow) {
				t.Fatalf("answer %x: %v %v", ans, aop, err)
			}
			echo := clientPacket(client, wire.ControlPacket{Opcode: wire.AckV1, SessionID: sid, NumAcks: 1, RemoteSessionID: cookie})
			if got, ok := u.checkEcho(echo, wire.AckV1, fuzzFrom, sid, fuzzNow); !ok || got != cookie {
				t.Fatal("the echo of a valid cookie was refused")
			}
			if _, ok := u.checkEcho(echo, wire.AckV1, fuzzFrom, sid, fuzzNow); ok && withTLSCrypt {
				t.Fatal("a replayed echo was accepted")
			}
			other := netip.AddrPortFrom(fuzzFrom.Addr(), fuzzFrom.Port()+1)
			if _, ok := u.checkEcho(clientPacket(client, wire.ControlPacket{Opcode: wire.AckV1, SessionID: sid, NumAcks: 1, RemoteSessionID: cookie}),
				wire.AckV1, other, sid, fuzzNow); ok {
				t.Fatal("a cookie was accepted from another address")
			}
		case wire.ControlV1, wire.AckV1:
			if got, ok := u.checkEcho(pkt, op, fuzzFrom, sid, fuzzNow); ok && !u.cookies.valid(got, fuzzFrom, sid, fuzzNow) {
				t.Fatalf("accepted %x with an invalid cookie", pkt)
			}
			if len(pc.out) != 0 {
				t.Fatal("answered an echo statelessly")
			}
		}
	})
}

// A cookie is good for two to three slots of half the handshake timeout, for its address and client session
// only.
func TestResetCookiesLifetime(t *testing.T) {
	c := newResetCookies(30 * time.Second) // 15 s slots
	t0 := time.Unix(1800000000, 0)         // the start of a slot
	id := c.make(fuzzFrom, fuzzSID, t0)
	for _, tc := range []struct {
		after time.Duration
		valid bool
	}{{0, true}, {29 * time.Second, true}, {44 * time.Second, true}, {45 * time.Second, false}, {-time.Second, false}} {
		if got := c.valid(id, fuzzFrom, fuzzSID, t0.Add(tc.after)); got != tc.valid {
			t.Errorf("%v after: valid %v, want %v", tc.after, got, tc.valid)
		}
	}
	if c.valid(id, netip.MustParseAddrPort("192.0.2.1:40001"), fuzzSID, t0) || c.valid(id, fuzzFrom, wire.SessionID{9}, t0) {
		t.Error("a cookie is valid for another port or client session")
	}
	if newResetCookies(30*time.Second).valid(id, fuzzFrom, fuzzSID, t0) {
		t.Error("a cookie is valid on another server (another key)")
	}
}

// The replay memory of first packets is bounded and forgets what has left the time window.
func TestFirstPacketsReplayMemory(t *testing.T) {
	now := fuzzNow
	f := newFirstPackets(fuzzKey())
	f.now = func() time.Time { return now }
	tc := tlscrypt.New(fuzzKey(), false)
	pkt := func(i int) []byte {
		return clientPacket(tc, wire.ControlPacket{Opcode: wire.ControlHardResetClientV2, SessionID: wire.SessionID{byte(i), byte(i >> 8), byte(i >> 16)}})
	}
	first := pkt(0)
	if !f.fresh(first) || f.fresh(first) {
		t.Fatal("a first packet must be fresh once")
	}
	for i := 1; i < 3*replayMemory; i++ {
		if !f.fresh(pkt(i)) {
			t.Fatalf("packet %d is not fresh", i)
		}
	}
	if n := f.remembered(); n != replayMemory {
		t.Errorf("%d packets remembered, want %d", n, replayMemory)
	}
	now = now.Add(firstPacketWindow + 2*time.Second)
	if !f.fresh(pkt(1 << 20)) {
		t.Fatal("a new packet refused")
	}
	if n := f.remembered(); n != 1 {
		t.Errorf("%d packets remembered after the window passed, want 1", n)
	}
	if _, err := f.open(nil, first); err == nil {
		t.Error("a packet from beyond the window opened")
	}
}
