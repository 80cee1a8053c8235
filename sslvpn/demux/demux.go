// Package demux shares one TCP port between the SSL-VPN protocols by the first bytes a client sends:
//
//	16 03 xx …            a TLS record carrying a ClientHello: AnyConnect (HTTPS)
//	LL LL 38|50 …         an OpenVPN TCP packet: 16-bit length, then P_CONTROL_HARD_RESET_CLIENT_V2 (7) or V3 (10)
//	                      in the opcode's high five bits with key id 0
//
// Anything else, or nothing within the first-bytes timeout, is closed. The bytes read to decide are handed on:
// the protocol reads the connection from its very first byte.
//
// # Connections awaiting login
//
// Everything a stranger can open costs memory before anyone knows who it is: a goroutine, TLS state, a
// protocol's session. A Demux bounds the connections that have not logged in yet, over all its listeners
// together and per source (an IPv4 address or an IPv6 /64). A connection counts from its accept until its
// handler calls Authenticated on it (the client has logged in) or returns. Under pressure the stranger is shed,
// not the user (package shed): a newcomer is always taken, and to make room the oldest waiting connection of its
// own source is closed when that source is at its bound, else, at the global bound, the oldest of the source
// holding the most. A flood from many addresses churns through its own connections, each of its sources holding
// several; a user's one connection, still in its TLS handshake or typing a password, is not among the biggest
// and stays.
//
// Locking: mu guards the table of waiting connections and is held briefly; connections are closed outside it. A
// Demux is safe for concurrent use, and Serve may run for several listeners at once.
package demux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"toride/sslvpn/shed"
)

// Protocol is what a connection speaks.
type Protocol int

const (
	Unknown    Protocol = iota
	TLS                 // AnyConnect's HTTPS
	OpenVPNTCP          // OpenVPN over TCP
)

func (p Protocol) String() string {
	switch p {
	case TLS:
		return "tls"
	case OpenVPNTCP:
		return "openvpn"
	}
	return "unknown"
}

// prefixLen is how many bytes Classify needs.
const prefixLen = 3

// OpenVPN opcodes of a client's first packet.
const (
	opHardResetClientV2 = 7
	opHardResetClientV3 = 10
)

// Classify tells the protocol from a connection's first three bytes.
func Classify(b []byte) Protocol {
	if len(b) < prefixLen {
		return Unknown
	}
	if b[0] == 0x16 && b[1] == 0x03 { // TLS handshake record, version 3.x
		return TLS
	}
	length := int(b[0])<<8 | int(b[1])
	op, keyID := b[2]>>3, b[2]&7
	if (op == opHardResetClientV2 || op == opHardResetClientV3) && keyID == 0 && length >= 14 && length <= 1600 {
		return OpenVPNTCP
	}
	return Unknown
}

// Errors of connections closed before a handler took them, as Options.Rejected hears them.
var (
	// ErrUnknownProtocol is a connection that is neither protocol.
	ErrUnknownProtocol = errors.New("demux: unknown protocol")
	// ErrEvicted is a waiting connection closed to make room for a newer one, at MaxPendingPerSource or at
	// MaxPending.
	ErrEvicted = errors.New("demux: closed to make room for a newer connection")
)

// Handler serves one connection of a protocol; it owns the connection. The connection implements Authenticator:
// the handler calls Authenticated once its client has logged in.
type Handler func(ctx context.Context, c net.Conn)

// Authenticator is implemented by the connections a Demux hands to its handlers.
type Authenticator interface {
	// Authenticated says the client has logged in: the connection no longer counts against MaxPending and
	// MaxPendingPerSource and is never evicted. It is idempotent and safe to call from any goroutine.
	Authenticated()
}

// Options configure a Demux. The zero value of each field means its default.
type Options struct {
	FirstBytesTimeout time.Duration // (0: 10 s)
	// MaxPending bounds the connections of all listeners that have not logged in yet; at the bound the oldest
	// of the source holding the most is closed for a newcomer. (0: 512)
	MaxPending int
	// MaxPendingPerSource bounds them per source, an IPv4 address or an IPv6 /64; at the bound the source's own
	// oldest is closed for its newcomer. (0: 32)
	MaxPendingPerSource int
	// Rejected, if not nil, hears about connections closed before a handler took them: undecided, or evicted
	// while undecided.
	Rejected func(remote net.Addr, err error)
}

// Defaults of Options.
const (
	DefaultFirstBytesTimeout   = 10 * time.Second
	DefaultMaxPending          = 512
	DefaultMaxPendingPerSource = 32
)

// Stats are a Demux's counters.
type Stats struct {
	Pending   int    `json:"pending"`   // connections not logged in yet
	Undecided int    `json:"undecided"` // of which still to send their first bytes
	Evicted   uint64 `json:"evicted"`   // closed to make room for a newer one at a bound
	Unknown   uint64 `json:"unknown"`   // closed undecided: junk, no first bytes in time, a protocol not served
}

// Demux hands the connections of its listeners to the handler of their protocol, within its bounds on
// connections awaiting login. The zero value is not usable; use New.
type Demux struct {
	opts Options

	mu        sync.Mutex
	waiting   *shed.Queue[*waiting] // connections not logged in yet
	undecided int                   // of which still to send their first bytes

	evicted, unknown atomic.Uint64
}

// waiting is one connection that has not logged in yet; mu guards its fields but conn.
type waiting struct {
	conn    net.Conn
	entry   *shed.Entry[*waiting] // nil once released or evicted
	decided bool                  // handed to a handler
	evicted bool
}

// New returns a Demux with opts' bounds.
func New(opts Options) *Demux {
	if opts.FirstBytesTimeout <= 0 {
		opts.FirstBytesTimeout = DefaultFirstBytesTimeout
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxPendingPerSource <= 0 {
		opts.MaxPendingPerSource = DefaultMaxPendingPerSource
	}
	return &Demux{opts: opts, waiting: shed.NewQueue[*waiting](opts.MaxPending, opts.MaxPendingPerSource, nil)}
}

// Stats returns the Demux's counters.
func (d *Demux) Stats() Stats {
	d.mu.Lock()
	st := Stats{Pending: d.waiting.Len(), Undecided: d.undecided}
	d.mu.Unlock()
	st.Evicted, st.Unknown = d.evicted.Load(), d.unknown.Load()
	return st
}

// Serve accepts connections on ln until ctx ends or ln fails, and hands each to the handler of its protocol, in
// a goroutine of its own. It closes ln and waits for its handlers to return before returning.
func (d *Demux) Serve(ctx context.Context, ln net.Listener, handlers map[Protocol]Handler) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("demux: accept: %w", err)
		}
		w := d.admit(c, addrOf(c.RemoteAddr()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.release(w)
			p, pc, err := Sniff(c, d.opts.FirstBytesTimeout)
			h := handlers[p]
			if err == nil && h == nil {
				err = fmt.Errorf("%w: %s is not served on this port", ErrUnknownProtocol, p)
			}
			if err == nil && !d.decide(w) {
				err = ErrEvicted // between its first bytes and now
			}
			if err != nil {
				c.Close()
				if d.wasEvicted(w) {
					err = ErrEvicted
				} else {
					d.unknown.Add(1)
				}
				d.reject(c.RemoteAddr(), err)
				return
			}
			pc.(*replayConn).login = func() { d.release(w) }
			h(ctx, pc)
		}()
	}
}

func (d *Demux) reject(remote net.Addr, err error) {
	if d.opts.Rejected != nil {
		d.opts.Rejected(remote, err)
	}
}

// admit counts a new connection as waiting; to keep the bounds it evicts, and closes, the waiting connections
// the shedding policy picks.
func (d *Demux) admit(c net.Conn, from netip.Addr) *waiting {
	w := &waiting{conn: c}
	var victims []*waiting
	d.mu.Lock()
	w.entry = d.waiting.Push(from, w, func(v *waiting) {
		v.entry, v.evicted = nil, true
		if !v.decided {
			d.undecided--
		}
		victims = append(victims, v)
	})
	d.undecided++
	d.mu.Unlock()
	for _, v := range victims {
		d.evicted.Add(1)
		v.conn.Close() // its handler (or Sniff) fails and returns
	}
	return w
}

// decide marks a connection handed to its handler; false if it was evicted meanwhile.
func (d *Demux) decide(w *waiting) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w.entry == nil {
		return false
	}
	if !w.decided {
		w.decided = true
		d.undecided--
	}
	return true
}

// release stops counting a connection: it logged in, or its handler returned. Idempotent.
func (d *Demux) release(w *waiting) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w.entry == nil {
		return
	}
	d.waiting.Remove(w.entry)
	w.entry = nil
	if !w.decided {
		d.undecided--
	}
}

func (d *Demux) wasEvicted(w *waiting) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return w.evicted
}

// addrOf is the address of a remote end; connections of other networks (unix sockets, pipes in tests) have the
// zero address, one source for all of them.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	return netip.Addr{}
}

// Sniff reads a connection's first bytes (waiting at most timeout), classifies them, and returns a connection
// that replays them.
func Sniff(c net.Conn, timeout time.Duration) (Protocol, net.Conn, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, prefixLen)
	n, err := io.ReadFull(c, buf)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		return Unknown, nil, fmt.Errorf("demux: first bytes: %w", err)
	}
	p := Classify(buf[:n])
	if p == Unknown {
		return Unknown, nil, fmt.Errorf("%w: first bytes % x", ErrUnknownProtocol, buf[:n])
	}
	return p, &replayConn{Conn: c, head: buf[:n]}, nil
}

// replayConn returns the sniffed bytes before reading on. Its Authenticated releases the connection's place
// among those awaiting login.
type replayConn struct {
	net.Conn
	head  []byte
	login func() // nil outside Serve
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// Authenticated implements Authenticator.
func (r *replayConn) Authenticated() {
	if r.login != nil {
		r.login()
	}
}
