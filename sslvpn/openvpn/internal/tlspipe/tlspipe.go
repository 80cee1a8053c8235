// Package tlspipe adapts the control channel's reliable message stream to the net.Conn that crypto/tls wants:
// the control loop feeds in-order ciphertext in with Feed and takes the TLS output with Take; the TLS goroutine
// reads and writes it as a connection.
//
// Write never blocks (it buffers, up to a limit, and calls the notify function), so the control loop may itself
// call tls.Conn.Write after the handshake without deadlocking on its own draining. Read blocks until data is fed
// or the pipe is closed.
//
// A Pipe is safe for concurrent use by one TLS goroutine and one control loop.
package tlspipe

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// ErrOverflow is returned when a side buffers more than the pipe's limit: the peer or the TLS side is not
// keeping up, and the session should end.
var ErrOverflow = errors.New("tlspipe: buffer limit exceeded")

// Pipe is one key state's TLS transport. The zero value is not usable; use New.
type Pipe struct {
	mu       sync.Mutex
	in, out  []byte
	closed   bool
	limit    int
	readable chan struct{} // one slot: data or close arrived
	notify   func()
	addr     net.Addr
}

// New returns a pipe that buffers at most limit bytes each way and calls notify (without holding locks) when TLS
// output becomes available. addr is reported as both ends' address.
func New(limit int, notify func(), addr net.Addr) *Pipe {
	return &Pipe{limit: limit, readable: make(chan struct{}, 1), notify: notify, addr: addr}
}

func (p *Pipe) signal() {
	select {
	case p.readable <- struct{}{}:
	default:
	}
}

// Feed appends in-order ciphertext from the peer for TLS to read.
func (p *Pipe) Feed(b []byte) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return net.ErrClosed
	}
	if len(p.in)+len(b) > p.limit {
		p.mu.Unlock()
		return ErrOverflow
	}
	p.in = append(p.in, b...)
	p.mu.Unlock()
	p.signal()
	return nil
}

// Take removes and returns up to max bytes of TLS output (a fresh slice the caller owns), or nil.
func (p *Pipe) Take(max int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(max, len(p.out))
	if n == 0 {
		return nil
	}
	b := append([]byte(nil), p.out[:n]...)
	p.out = p.out[n:]
	if len(p.out) == 0 {
		p.out = nil
	}
	return b
}

// Pending is the number of output bytes not yet taken.
func (p *Pipe) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.out)
}

// Read implements net.Conn for the TLS side.
func (p *Pipe) Read(b []byte) (int, error) {
	for {
		p.mu.Lock()
		if len(p.in) > 0 {
			n := copy(b, p.in)
			p.in = p.in[n:]
			if len(p.in) == 0 {
				p.in = nil
			}
			p.mu.Unlock()
			return n, nil
		}
		if p.closed {
			p.mu.Unlock()
			return 0, net.ErrClosed
		}
		p.mu.Unlock()
		<-p.readable
	}
}

// Write implements net.Conn for the TLS side; it never blocks.
func (p *Pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(p.out)+len(b) > p.limit {
		p.mu.Unlock()
		return 0, ErrOverflow
	}
	p.out = append(p.out, b...)
	p.mu.Unlock()
	if p.notify != nil {
		p.notify()
	}
	return len(b), nil
}

// Close unblocks Read and makes every later call fail. It is idempotent.
func (p *Pipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
	return nil
}

// LocalAddr implements net.Conn.
func (p *Pipe) LocalAddr() net.Addr { return p.addr }

// RemoteAddr implements net.Conn.
func (p *Pipe) RemoteAddr() net.Addr { return p.addr }

// SetDeadline implements net.Conn; deadlines are not supported (the control loop closes the pipe instead).
func (p *Pipe) SetDeadline(time.Time) error { return os.ErrNoDeadline }

// SetReadDeadline implements net.Conn; see SetDeadline.
func (p *Pipe) SetReadDeadline(time.Time) error { return os.ErrNoDeadline }

// SetWriteDeadline implements net.Conn; writes never block, so there is nothing to bound.
func (p *Pipe) SetWriteDeadline(time.Time) error { return nil }
