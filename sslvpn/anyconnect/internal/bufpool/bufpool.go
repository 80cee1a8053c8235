// Package bufpool is a bounded pool of fixed-size packet buffers with room in front of the payload for a CSTP
// header, so a packet is framed in place. Get returns nil once the limit of buffers is out: a burst towards slow
// clients drops packets instead of growing memory.
//
// A Pool is safe for concurrent use. The zero value is not usable; use New.
package bufpool

import (
	"sync"
	"sync/atomic"
)

// Headroom is the room kept in front of every payload, so it is framed in place: a CSTP header (8 bytes) or
// the AnyConnect DTLS header (1 byte) under a DTLS record header and explicit nonce (21 bytes).
const Headroom = 32

// Tailroom is the room kept after the largest payload: a DTLS record's authentication tag.
const Tailroom = 16

// Size is the length of a buffer: headroom, an IP packet of up to 2000 bytes (the largest MTU offered is 1500;
// TUN devices hand over no larger packets) and tailroom.
const Size = 2048

// MaxPayload is the largest payload a buffer holds.
const MaxPayload = Size - Headroom - Tailroom

// Buf is one packet buffer: the payload lives at Data[Headroom:Headroom+N]. Whoever holds a Buf owns it until
// it calls Put or hands it over (the hand-off says so).
type Buf struct {
	Data [Size]byte
	N    int
}

// Payload returns the payload.
func (b *Buf) Payload() []byte { return b.Data[Headroom : Headroom+b.N] }

// Pool hands out buffers up to a limit.
type Pool struct {
	free sync.Pool
	out  atomic.Int64
	max  int64
}

// New returns a pool that lets at most max buffers be out at once.
func New(max int) *Pool {
	p := &Pool{max: int64(max)}
	p.free.New = func() any { return new(Buf) }
	return p
}

// Get returns a buffer, or nil when max buffers are out.
func (p *Pool) Get() *Buf {
	if p.out.Add(1) > p.max {
		p.out.Add(-1)
		return nil
	}
	return p.free.Get().(*Buf)
}

// Put returns a buffer, which must not be used afterwards. Put(nil) does nothing.
func (p *Pool) Put(b *Buf) {
	if b == nil {
		return
	}
	b.N = 0
	p.out.Add(-1)
	p.free.Put(b)
}

// Outstanding is the number of buffers out.
func (p *Pool) Outstanding() int { return int(p.out.Load()) }
