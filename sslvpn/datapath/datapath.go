// Package datapath moves IP packets between one SSL-VPN server's TUN device and its client sessions.
//
//	LAN → client: TUN reader goroutine ── Read (batched; GSO split by the tun package) ──► destination address
//	              ──► Table (atomic copy-on-write map) ──► Peer.SendPacket (the session copies and queues; a full
//	              queue drops and counts, so one slow client never stalls the reader)
//	client → LAN: the engine's goroutine that decrypted it ──► Uplink.WritePacket: source must be the session's
//	              address (anti-spoofing), destination inside the session's Reach (what it was given) ──► copy into
//	              a buffer of the bounded pool, held by the uplink ──► Uplink.Flush, when the engine has nothing
//	              more at hand (the end of a batch of datagrams, of a TLS record) or a batch is full ──► writer
//	              queue (full: drop and count) ──► TUN writer goroutine ── Write of all that is queued (batched;
//	              GRO coalescing by the tun package)
//
// The uplink holds packets until the engine's flush so that the writer is woken once per batch, not once per
// packet: a wake-up costs more than the write. The writer goroutine stays: while it writes, the engine decrypts
// the next batch on the other core, and what queues meanwhile makes the next write's batch, which GRO coalesces
// into fewer, larger packets for the kernel.
//
// Buffers: the reader owns its batch of buffers and lends each packet to SendPacket for the call only. An uplink
// takes a buffer from the pool per packet, hands it to the writer through the queue at its flush, and the writer
// returns it after the write. No allocation per packet.
//
// A Device is safe for concurrent use; Close stops its goroutines and waits for them.
package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"toride/dataplane/tun"
)

// Errors of the uplink; each is also counted.
var (
	ErrSpoofed   = errors.New("datapath: source address is not the session's")
	ErrForbidden = errors.New("datapath: destination is not one the session was given")
	ErrMalformed = errors.New("datapath: not an IPv4 packet")
	ErrNoBuffer  = errors.New("datapath: no free buffer")
	ErrQueueFull = errors.New("datapath: TUN writer queue full")
	ErrInUse     = errors.New("datapath: address already attached")
	ErrClosed    = errors.New("datapath: closed")
)

// headroom is kept in front of every packet written, for the virtio-net header the tun package writes in place.
const headroom = 16

// bufSize fits the largest IP packet plus headroom: the writer's GRO coalesces packets into the first buffer.
const bufSize = headroom + 65535

// Peer is a session as the datapath sees it.
type Peer interface {
	// SendPacket queues pkt for the client; it copies pkt and never blocks, returning false when it dropped it.
	SendPacket(pkt []byte) bool
}

// Stats are the device's counters.
type Stats struct {
	ToClients   uint64 `json:"to_clients"`   // packets read from TUN and queued to a session
	FromClients uint64 `json:"from_clients"` // packets from sessions written to TUN
	NoRoute     uint64 `json:"no_route"`     // TUN packets for an address without a session
	SessionDrop uint64 `json:"session_drop"` // TUN packets a session's full queue dropped
	Spoofed     uint64 `json:"spoofed"`      // client packets with a source not their own
	Forbidden   uint64 `json:"forbidden"`    // client packets to a destination they were not given
	Malformed   uint64 `json:"malformed"`    // client packets that are not IPv4
	QueueFull   uint64 `json:"queue_full"`   // client packets dropped: writer queue or buffers exhausted
	WriteErrors uint64 `json:"write_errors"`
}

type packet struct {
	buf []byte // from the pool, len bufSize
	n   int    // packet length after headroom
}

type counters struct {
	toClients, fromClients, noRoute, sessionDrop, spoofed, forbidden, malformed, queueFull, writeErrors atomic.Uint64
}

// Device is one TUN device and its sessions.
type Device struct {
	dev  tun.Device
	name string

	table atomic.Pointer[map[[4]byte]Peer]
	mu    sync.Mutex // serializes table writers

	free  chan []byte // the bounded buffer pool
	queue chan packet // uplinks → writer
	batch int         // the most packets an uplink holds before it flushes: the device's batch size
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	c counters
}

// Options size a Device.
type Options struct {
	Buffers int // pooled uplink buffers (0: 512, 32 MiB)
	Queue   int // writer queue length (0: Buffers)
}

// New runs the datapath over an open TUN device (tun.Kernel's, or a tuntest.Device); Close closes it.
func New(dev tun.Device, opts Options) (*Device, error) {
	name, err := dev.Name()
	if err != nil {
		return nil, err
	}
	if opts.Buffers == 0 {
		opts.Buffers = 512
	}
	if opts.Queue == 0 {
		opts.Queue = opts.Buffers
	}
	d := &Device{dev: dev, name: name, free: make(chan []byte, opts.Buffers), queue: make(chan packet, opts.Queue),
		batch: max(dev.BatchSize(), 1), stop: make(chan struct{})}
	for range opts.Buffers {
		d.free <- make([]byte, bufSize)
	}
	empty := map[[4]byte]Peer{}
	d.table.Store(&empty)
	d.wg.Add(3)
	go d.reader()
	go d.writer()
	go d.events()
	return d, nil
}

// Name is the TUN device's name.
func (d *Device) Name() string { return d.name }

// Attach routes packets for addr to p and returns the uplink for p's packets, which may go to reach.
func (d *Device) Attach(addr netip.Addr, p Peer, reach *Reach) (*Uplink, error) {
	if !addr.Is4() {
		return nil, fmt.Errorf("datapath: %s is not IPv4", addr)
	}
	key := addr.As4()
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.table.Load()
	if _, taken := old[key]; taken {
		return nil, fmt.Errorf("%w: %s", ErrInUse, addr)
	}
	next := make(map[[4]byte]Peer, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[key] = p
	d.table.Store(&next)
	u := &Uplink{d: d, addr: key, held: make([][]byte, 0, d.batch)}
	u.reach.Store(reach)
	return u, nil
}

// Detach stops routing packets for addr to p (if p is still the one attached).
func (d *Device) Detach(addr netip.Addr, p Peer) {
	key := addr.As4()
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.table.Load()
	if cur, ok := old[key]; !ok || cur != p {
		return
	}
	next := make(map[[4]byte]Peer, len(old))
	for k, v := range old {
		if k != key {
			next[k] = v
		}
	}
	d.table.Store(&next)
}

// Uplink writes one session's packets to the TUN device. Its methods are safe for concurrent use (an AnyConnect
// session writes from its TLS and its DTLS reader).
type Uplink struct {
	d         *Device
	addr      [4]byte
	reach     atomic.Pointer[Reach]
	forbidden atomic.Uint64

	mu   sync.Mutex
	held [][]byte // pool buffers, each sliced to headroom + its packet; written at the next Flush
}

// SetReach changes where the session may send, at once (a commit that gives or takes a network).
func (u *Uplink) SetReach(r *Reach) { u.reach.Store(r) }

// Forbidden counts the session's packets to destinations it was not given.
func (u *Uplink) Forbidden() uint64 { return u.forbidden.Load() }

// WritePacket checks a packet from the client and holds a copy of it for the next Flush; pkt is only read during
// the call. When the uplink holds a full batch it flushes at once.
func (u *Uplink) WritePacket(pkt []byte) error {
	d := u.d
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		d.c.malformed.Add(1)
		return ErrMalformed
	}
	if [4]byte(pkt[12:16]) != u.addr {
		d.c.spoofed.Add(1)
		return ErrSpoofed
	}
	if r := u.reach.Load(); r == nil || !r.Contains(netip.AddrFrom4([4]byte(pkt[16:20]))) {
		u.forbidden.Add(1)
		d.c.forbidden.Add(1)
		return ErrForbidden
	}
	if len(pkt) > bufSize-headroom {
		d.c.malformed.Add(1)
		return ErrMalformed
	}
	if d.closed() {
		return ErrClosed
	}
	var buf []byte
	select {
	case buf = <-d.free:
	default:
		d.c.queueFull.Add(1)
		return ErrNoBuffer
	}
	n := copy(buf[headroom:], pkt)
	u.mu.Lock()
	u.held = append(u.held, buf[:headroom+n])
	full := len(u.held) >= d.batch
	u.mu.Unlock()
	if full {
		u.Flush()
	}
	return nil
}

// Flush hands the packets the uplink holds to the writer, which it wakes once for them all. An engine calls it
// when it has no more packets of the session at hand, before it waits for the next ones. A full writer queue
// drops (and counts) the packets that do not fit.
func (u *Uplink) Flush() {
	u.mu.Lock()
	defer u.mu.Unlock()
	d := u.d
	for i, b := range u.held {
		u.held[i] = nil
		select {
		case d.queue <- packet{buf: b[:cap(b)], n: len(b) - headroom}:
		default:
			d.free <- b[:cap(b)]
			d.c.queueFull.Add(1)
		}
	}
	u.held = u.held[:0]
}

func (d *Device) reader() {
	defer d.wg.Done()
	batch := d.dev.BatchSize()
	mtu, err := d.dev.MTU()
	if err != nil || mtu <= 0 {
		mtu = 1500
	}
	bufs := make([][]byte, batch)
	for i := range bufs {
		// One segment each after the tun package splits GSO; without offloads a read is one packet of at most
		// the MTU.
		bufs[i] = make([]byte, max(mtu, 1500)+headroom)
	}
	sizes := make([]int, batch)
	for {
		n, err := d.dev.Read(bufs, sizes, 0)
		for i := range n {
			d.route(bufs[i][:sizes[i]])
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, tun.ErrTooManySegments) && d.closed() {
				return
			}
			select {
			case <-d.stop:
				return
			default:
			}
			// A read error other than closing (a too-large GSO batch) loses that read only.
			continue
		}
	}
}

func (d *Device) closed() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

// route hands one packet read from the TUN device to its session.
func (d *Device) route(pkt []byte) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		d.c.noRoute.Add(1) // IPv6 and junk: no IPv6 pools
		return
	}
	p := (*d.table.Load())[[4]byte(pkt[16:20])]
	if p == nil {
		d.c.noRoute.Add(1)
		return
	}
	if p.SendPacket(pkt) {
		d.c.toClients.Add(1)
	} else {
		d.c.sessionDrop.Add(1)
	}
}

func (d *Device) writer() {
	defer d.wg.Done()
	batchSize := d.dev.BatchSize()
	batch := make([][]byte, 0, batchSize)
	held := make([][]byte, 0, batchSize)
	for {
		select {
		case <-d.stop:
			return
		case p := <-d.queue:
			batch = append(batch[:0], p.buf[:headroom+p.n])
			held = append(held[:0], p.buf)
		}
	fill:
		for len(batch) < batchSize {
			select {
			case p := <-d.queue:
				batch = append(batch, p.buf[:headroom+p.n])
				held = append(held, p.buf)
			default:
				break fill
			}
		}
		if _, err := d.dev.Write(batch, headroom); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			d.c.writeErrors.Add(1)
		} else {
			d.c.fromClients.Add(uint64(len(batch)))
		}
		for _, b := range held {
			d.free <- b[:cap(b)]
		}
	}
}

// events drains the TUN device's events (nobody needs them: the device is ours).
func (d *Device) events() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case _, ok := <-d.dev.Events():
			if !ok {
				return
			}
		}
	}
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{ToClients: d.c.toClients.Load(), FromClients: d.c.fromClients.Load(), NoRoute: d.c.noRoute.Load(),
		SessionDrop: d.c.sessionDrop.Load(), Spoofed: d.c.spoofed.Load(), Forbidden: d.c.forbidden.Load(), Malformed: d.c.malformed.Load(),
		QueueFull: d.c.queueFull.Load(), WriteErrors: d.c.writeErrors.Load()}
}

// Close stops the goroutines and closes the TUN device (which removes it). It is idempotent.
func (d *Device) Close() error {
	var err error
	d.once.Do(func() {
		close(d.stop)
		err = d.dev.Close() // unblocks the reader
		d.wg.Wait()
	})
	return err
}
