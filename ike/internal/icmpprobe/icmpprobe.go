// Package icmpprobe sends ICMP echo requests from one local address to one target at a fixed interval and
// reports each answer or loss. The engine points it from a tunnel's inside address to the cloud's inside address,
// so the echoes travel through that tunnel's CHILD_SA: they keep the tunnel from idling out, and their fate is
// the tunnel's data-path health.
//
// A Prober owns one raw ICMP socket (opened in the given network namespace) and two goroutines (one sends and
// reports, one reads); Close stops them and waits. SetEnabled and Close are safe for concurrent use.
package icmpprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"toride/dataplane/nsutil"
)

// ErrProbe is wrapped by this package's errors.
var ErrProbe = errors.New("icmpprobe")

// Config is one probe stream.
type Config struct {
	NetnsPath string     // network namespace to open the socket in; "" is the caller's
	Source    netip.Addr // a local address; the socket is bound to it
	Target    netip.Addr
	Interval  time.Duration // between requests
	Timeout   time.Duration // how long to wait for each answer; may be longer than Interval
	ID        uint16        // ICMP echo identifier, to tell our answers apart
}

// Result is the outcome of one echo request.
type Result struct {
	Seq  int
	OK   bool
	RTT  time.Duration // valid if OK
	Sent time.Time
	Err  error // a send error (no route, …); OK is false
}

// Prober is one running probe stream.
type Prober struct {
	cfg     Config
	conn    *icmp.PacketConn
	enabled atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// Start opens the socket and starts probing; results go to report, which must not block (the caller buffers
// and may drop). A new Prober is disabled: it sends nothing until SetEnabled(true).
func Start(cfg Config, report func(Result)) (*Prober, error) {
	if !cfg.Source.Is4() || !cfg.Target.Is4() {
		return nil, fmt.Errorf("%w: IPv4 source and target required", ErrProbe)
	}
	if cfg.Interval <= 0 || cfg.Timeout <= 0 {
		return nil, fmt.Errorf("%w: interval and timeout must be positive", ErrProbe)
	}
	var conn *icmp.PacketConn
	err := nsutil.Do(cfg.NetnsPath, func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", cfg.Source.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: open ICMP socket on %s: %w", ErrProbe, cfg.Source, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Prober{cfg: cfg, conn: conn, cancel: cancel, done: make(chan struct{})}
	go p.run(ctx, report)
	return p, nil
}

// SetEnabled starts or pauses probing (the engine pauses it while the tunnel's probe CHILD_SA is not installed,
// so echoes never leave unencrypted).
func (p *Prober) SetEnabled(on bool) { p.enabled.Store(on) }

// Close stops the prober and waits for it. It is idempotent.
func (p *Prober) Close() error {
	p.once.Do(func() {
		p.cancel()
		p.conn.Close() // unblocks a pending read
	})
	<-p.done
	return nil
}

// outstanding is a sent echo request not yet reported.
type outstanding struct {
	Result
	done bool // answered, or failed to send
}

// echoReply is an answer read off the socket.
type echoReply struct {
	seq int
	at  time.Time
}

// run sends a request every interval, without waiting for the previous one's answer: the timeout may be longer
// than the interval, so that a slow path (a satellite link, a congested uplink) is not mistaken for a dead one
// while dense probes still notice a dead one quickly. Results are reported in the order the requests were sent,
// each once it is answered or its timeout has passed, so that the caller can count losses in a row.
func (p *Prober) run(ctx context.Context, report func(Result)) {
	defer close(p.done)
	replies := make(chan echoReply, 64)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.read(ctx, replies)
	}()
	defer func() { <-readerDone }()

	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	var pending []outstanding
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if p.enabled.Load() {
				seq = (seq + 1) & 0xffff
				pending = append(pending, p.send(seq))
			}
		case r := <-replies:
			for i := range pending {
				o := &pending[i]
				if o.Seq == r.seq && !o.done && r.at.Sub(o.Sent) <= p.cfg.Timeout {
					o.OK, o.RTT, o.done = true, r.at.Sub(o.Sent), true
					break
				}
			}
		case <-deadline.C:
		}
		now := time.Now()
		for len(pending) > 0 && (pending[0].done || now.Sub(pending[0].Sent) >= p.cfg.Timeout) {
			report(pending[0].Result)
			pending = pending[1:]
		}
		if len(pending) > 0 {
			deadline.Reset(pending[0].Sent.Add(p.cfg.Timeout).Sub(now))
		}
	}
}

// send sends echo request seq.
func (p *Prober) send(seq int) outstanding {
	msg := icmp.Message{
		Type: ipv4.ICMPTypeEcho,
		Body: &icmp.Echo{ID: int(p.cfg.ID), Seq: seq, Data: []byte("toride")},
	}
	o := outstanding{Result: Result{Seq: seq, Sent: time.Now()}}
	wire, err := msg.Marshal(nil)
	if err == nil {
		_, err = p.conn.WriteTo(wire, &net.IPAddr{IP: p.cfg.Target.AsSlice()})
	}
	if err != nil {
		o.Err, o.done = err, true
	}
	return o
}

// read passes the target's echo replies to our identifier on to run, until the socket is closed.
func (p *Prober) read(ctx context.Context, replies chan<- echoReply) {
	buf := make([]byte, 1500)
	target := p.cfg.Target.AsSlice()
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		at := time.Now()
		if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(target) {
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != int(p.cfg.ID) {
			continue // another prober's answer
		}
		select {
		case replies <- echoReply{seq: echo.Seq, at: at}:
		case <-ctx.Done():
			return
		}
	}
}
