package openvpn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"
	"sync"
	"time"

	"toride/sslvpn/openvpn/internal/tlscrypt"
	"toride/sslvpn/openvpn/internal/wire"
	"toride/sslvpn/shed"
)

// What a client costs before it has a session, and until it connects:
//
//	UDP  hard reset ──▶ firstPackets.open (tls-crypt: HMAC, time window) ──▶ one stateless answer whose session id
//	                    is a resetCookies HMAC of the client's address and session id; nothing is kept
//	     ACK or P_CONTROL_V1 echoing that session id ──▶ firstPackets.open, resetCookies.valid,
//	                    firstPackets.fresh (tls-crypt: not a replay) ──▶ handshakeTable.admit ──▶ a session
//	TCP  hard reset ──▶ firstPackets.open, firstPackets.fresh ──▶ handshakeTable.admit ──▶ a session
//
// The TCP handshake has already proved the client's address; UDP proves it with the echo, so an address that
// never received our answer gets no state and no retransmission. The stateless answer is sent once per reset
// and carries no acknowledgement, which makes it exactly as long as the smallest reset that can earn it: the
// server never sends more to an unproven address than it received from it. (OpenVPN 2.6 acknowledges the
// client's reset in the same answer, 12 bytes more, and bounds how many such answers it sends per period; the
// client acknowledges our reset either way, and we acknowledge its reset from the new session.)

// firstPacketWindow bounds the distance between the time in a tls-crypt client's first packets (its clock when
// its session began) and ours. A stock client keeps that time for the whole attempt, retransmitting its reset
// for up to its hand-window (60 s), and clients' clocks drift; five minutes is the skew Kerberos tolerates.
// OpenVPN 2.6 ignores the packet id of first packets altogether and relies on its HMAC session id against
// replays; here a replayed first packet would cost a TCP session, so it is refused.
const firstPacketWindow = 5 * time.Minute

// replayMemory bounds the first packets remembered against replays. Only holders of the tls-crypt key can make
// new ones; past the bound the oldest are forgotten (a packet forgotten within its window could be replayed
// once more, into a handshake that still needs the key to go on).
const replayMemory = 4096

// firstPackets checks the packets that arrive before a client has a session. It is safe for concurrent use:
// TCP connections call it from their own goroutines, a UDP socket from its reader.
type firstPackets struct {
	now func() time.Time

	mu   sync.Mutex
	tc   *tlscrypt.Context // nil without tls-crypt
	seen map[replayKey]time.Time
	ring [replayMemory]replayEntry
	head int // oldest entry of ring
	n    int
}

// replayKey identifies a tls-crypt packet: the client's session id, packet id and time.
type replayKey [wire.SessionIDLen + tlscrypt.PIDLen]byte

type replayEntry struct {
	key     replayKey
	expires time.Time
}

func newFirstPackets(k *tlscrypt.Key) *firstPackets {
	f := &firstPackets{now: time.Now, seen: map[replayKey]time.Time{}}
	if k != nil {
		f.tc = tlscrypt.New(k, true)
	}
	return f
}

// open authenticates a client's first packet and returns its plain body (from the ack count on), appended to dst
// with tls-crypt; without it, the packet's own body. With tls-crypt, a packet whose time is outside
// firstPacketWindow fails with errStale.
func (f *firstPackets) open(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < wire.ControlHeaderLen {
		return nil, wire.ErrTooShort
	}
	if f.tc == nil {
		return pkt[wire.ControlHeaderLen:], nil
	}
	f.mu.Lock()
	body, _, err := f.tc.Open(dst, pkt)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	_, sent, _ := tlscrypt.PacketID(pkt)
	if d := f.now().Sub(sent).Abs(); d > firstPacketWindow {
		return nil, fmt.Errorf("%w: its time is %v off ours", errStale, d.Round(time.Second))
	}
	return body, nil
}

// errStale is a first packet outside firstPacketWindow, errReplayed one seen before.
var (
	errStale    = fmt.Errorf("%w: tls-crypt first packet outside the time window", ErrProtocol)
	errReplayed = fmt.Errorf("%w: replayed tls-crypt first packet", ErrProtocol)
)

// fresh records a first packet that open accepted and that is about to open a session; false if it was seen
// within its window already. Without tls-crypt nothing tells a replay from a retransmission, and it is true.
func (f *firstPackets) fresh(pkt []byte) bool {
	if f.tc == nil {
		return true
	}
	var k replayKey
	copy(k[:], pkt[1:wire.ControlHeaderLen])
	copy(k[wire.SessionIDLen:], pkt[wire.ControlHeaderLen:wire.ControlHeaderLen+tlscrypt.PIDLen])
	_, sent, _ := tlscrypt.PacketID(pkt)
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if exp, ok := f.seen[k]; ok && now.Before(exp) {
		return false
	}
	for f.n > 0 && (f.n == len(f.ring) || !now.Before(f.ring[f.head].expires)) {
		old := f.ring[f.head]
		if f.seen[old.key] == old.expires {
			delete(f.seen, old.key)
		}
		f.head, f.n = (f.head+1)%len(f.ring), f.n-1
	}
	e := replayEntry{key: k, expires: sent.Add(firstPacketWindow + time.Second)}
	f.ring[(f.head+f.n)%len(f.ring)] = e
	f.n++
	f.seen[k] = e.expires
	return true
}

// remembered is how many first packets the replay check holds.
func (f *firstPackets) remembered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

// answer appends a stateless answer to dst: wrapped with tls-crypt packet id 1 (the id a session continues
// from), or plain.
func (f *firstPackets) answer(dst []byte, p *wire.ControlPacket) ([]byte, error) {
	if f.tc == nil {
		return p.Append(dst), nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tc.SetSendPacketID(0)
	return f.tc.Wrap(dst, p.AppendHeader(nil), p.AppendBody(nil), f.now())
}

// resetCookies makes and checks the session ids of stateless answers: the first 8 bytes of an HMAC-SHA256, under
// a key of its own, of the time slot, the client's address and port, and the client's session id. A cookie is
// good in its slot and the two after it, so for two to three slots. Not safe for concurrent use: a UDP socket's
// reader owns one.
type resetCookies struct {
	mac  hash.Hash
	slot int64 // seconds
	in   [8 + 16 + 2 + wire.SessionIDLen]byte
	sum  [sha256.Size]byte
}

func newResetCookies(handshakeTimeout time.Duration) *resetCookies {
	key := make([]byte, sha256.Size)
	if _, err := rand.Read(key); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	// Slots of half the handshake timeout (OpenVPN: half its hand-window): a cookie outlives the handshake it
	// starts.
	slot := int64(handshakeTimeout / 2 / time.Second)
	return &resetCookies{mac: hmac.New(sha256.New, key), slot: max(slot, 1)}
}

func (c *resetCookies) at(slot int64, from netip.AddrPort, client wire.SessionID) wire.SessionID {
	binary.BigEndian.PutUint64(c.in[0:], uint64(slot))
	a := from.Addr().As16()
	copy(c.in[8:], a[:])
	binary.BigEndian.PutUint16(c.in[24:], from.Port())
	copy(c.in[26:], client[:])
	c.mac.Reset()
	c.mac.Write(c.in[:])
	var id wire.SessionID
	copy(id[:], c.mac.Sum(c.sum[:0]))
	return id
}

// make returns the session id to answer a reset of client from with, now.
func (c *resetCookies) make(from netip.AddrPort, client wire.SessionID, now time.Time) wire.SessionID {
	return c.at(now.Unix()/c.slot, from, client)
}

// valid reports whether id is a cookie made for client at from in the current slot or the two before.
func (c *resetCookies) valid(id wire.SessionID, from netip.AddrPort, client wire.SessionID, now time.Time) bool {
	cur := now.Unix() / c.slot
	for s := cur; s >= cur-2; s-- {
		want := c.at(s, from, client)
		if hmac.Equal(want[:], id[:]) {
			return true
		}
	}
	return false
}

// handshakeTable holds the sessions of both transports that have not connected yet, bounded in total and per
// source by the shedding policy of package shed: a new client always gets its session, and the handshake ended
// to make room is its own source's oldest at MaxHandshakesPerSource, else the oldest of the source holding the
// most. A real client connects within a second or two holding one handshake; a flood, even from many
// addresses, holds several per address and churns through its own. Refusing newcomers instead would let whoever
// filled the table first keep every user out until the handshake timeout. It is safe for concurrent use.
type handshakeTable struct {
	mu      sync.Mutex
	order   *shed.Queue[*session]
	entries map[*session]*shed.Entry[*session]
}

func newHandshakeTable(max, perSource int) *handshakeTable {
	return &handshakeTable{order: shed.NewQueue[*session](max, perSource, nil), entries: map[*session]*shed.Entry[*session]{}}
}

// errEvicted is a handshake ended to make room for a newer one.
var errEvicted = fmt.Errorf("%w: ended to make room for a newer one", ErrBusy)

// admit adds s, and takes out and returns the handshakes that make room for it, for the caller to end.
func (h *handshakeTable) admit(s *session) (victims []*session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries[s] = h.order.Push(s.Remote().Addr(), s, func(v *session) {
		delete(h.entries, v)
		victims = append(victims, v)
	})
	return victims
}

// leave removes s (it connected or ended); idempotent.
func (h *handshakeTable) leave(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.entries[s]; e != nil {
		h.order.Remove(e)
		delete(h.entries, s)
	}
}

func (h *handshakeTable) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.order.Len()
}
