// Package icmpprobe sends ICMP echo requests from one local address to one target at a fixed interval and
// reports each answer or loss. The engine points it from a tunnel's inside address to the cloud's inside address,
// so the echoes travel through that tunnel's CHILD_SA: they keep the tunnel from idling out, and their fate is
// the tunnel's data-path health.
//
// A Prober owns one raw ICMP socket (opened in the given network namespace) and one goroutine; Close stops both
// and waits. SetEnabled and Close are safe for concurrent use.
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
	Interval  time.Duration
	Timeout   time.Duration // how long to wait for each answer; at most Interval
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
	cfg.Timeout = min(cfg.Timeout, cfg.Interval)
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

func (p *Prober) run(ctx context.Context, report func(Result)) {
	defer close(p.done)
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	buf := make([]byte, 1500)
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !p.enabled.Load() {
			continue
		}
		seq = (seq + 1) & 0xffff
		r := p.probe(ctx, seq, buf)
		if ctx.Err() != nil {
			return
		}
		report(r)
	}
}

// probe sends one echo request and waits for its answer.
func (p *Prober) probe(ctx context.Context, seq int, buf []byte) Result {
	msg := icmp.Message{
		Type: ipv4.ICMPTypeEcho,
		Body: &icmp.Echo{ID: int(p.cfg.ID), Seq: seq, Data: []byte("toride-keepalive")},
	}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return Result{Seq: seq, Err: err}
	}
	sent := time.Now()
	res := Result{Seq: seq, Sent: sent}
	dst := &net.IPAddr{IP: p.cfg.Target.AsSlice()}
	if _, err := p.conn.WriteTo(wire, dst); err != nil {
		res.Err = err
		return res
	}
	deadline := sent.Add(p.cfg.Timeout)
	for ctx.Err() == nil {
		if err := p.conn.SetReadDeadline(deadline); err != nil {
			res.Err = err
			return res
		}
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return res // timeout (or closed): a loss
		}
		ip, ok := from.(*net.IPAddr)
		if !ok || !ip.IP.Equal(dst.IP) {
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != int(p.cfg.ID) || echo.Seq != seq {
			continue // another prober's answer, or a late one
		}
		res.OK, res.RTT = true, time.Since(sent)
		return res
	}
	return res
}
