// Package bufpool is a bounded pool of fixed-size packet buffers, shared by the protocol engines: Get fails
// (returns nil) once max buffers are out, so a burst towards slow clients drops packets instead of growing
// memory. Each engine places the payload at an offset of its own, leaving room to frame the packet in place.
//
// A Pool is safe for concurrent use. The zero value is not usable; use New.
package bufpool

import (
	"sync"
	"sync/atomic"
)

// Size is the length of every buffer: room for a 1500-byte MTU with the largest framing of either protocol
// (OpenVPN's CBC with HMAC-SHA512, AnyConnect's DTLS record), and then some.
const Size = 2048

// Buf is one packet buffer. Data is always Size bytes; Off and N locate the payload within it. Whoever holds a
// Buf owns it until it calls Put or hands it over (the hand-off says so).
type Buf struct {
	Data [Size]byte
	Off  int
	N    int
}

// Payload returns the payload slice.
func (b *Buf) Payload() []byte { return b.Data[b.Off : b.Off+b.N] }

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
	b.Off, b.N = 0, 0
	p.out.Add(-1)
	p.free.Put(b)
}

// Outstanding is the number of buffers out.
func (p *Pool) Outstanding() int { return int(p.out.Load()) }
