// Package demux shares one TCP port between the SSL-VPN protocols by the first bytes a client sends:
//
//	16 03 xx …            a TLS record carrying a ClientHello: AnyConnect (HTTPS)
//	LL LL 38|50 …         an OpenVPN TCP packet: 16-bit length, then P_CONTROL_HARD_RESET_CLIENT_V2 (7) or V3 (10)
//	                      in the opcode's high five bits with key id 0
//
// Anything else, or nothing within the first-bytes timeout, is closed. The bytes read to decide are handed on:
// the protocol reads the connection from its very first byte.
package demux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
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

// ErrUnknownProtocol is a connection that is neither protocol.
var ErrUnknownProtocol = errors.New("demux: unknown protocol")

// Handler serves one connection of a protocol; it owns the connection.
type Handler func(ctx context.Context, c net.Conn)

// Options configure Serve.
type Options struct {
	FirstBytesTimeout time.Duration // (0: 10 s)
	// Rejected, if not nil, hears about connections closed undecided.
	Rejected func(remote net.Addr, err error)
}

// Serve accepts connections on ln until ctx ends or ln fails, and hands each to the handler of its protocol, in
// a goroutine of its own. It closes ln and waits for its handlers to return before returning.
func Serve(ctx context.Context, ln net.Listener, handlers map[Protocol]Handler, opts Options) error {
	if opts.FirstBytesTimeout == 0 {
		opts.FirstBytesTimeout = 10 * time.Second
	}
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, pc, err := Sniff(c, opts.FirstBytesTimeout)
			h := handlers[p]
			if err == nil && h == nil {
				err = fmt.Errorf("%w: %s is not served on this port", ErrUnknownProtocol, p)
			}
			if err != nil {
				c.Close()
				if opts.Rejected != nil {
					opts.Rejected(c.RemoteAddr(), err)
				}
				return
			}
			h(ctx, pc)
		}()
	}
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

// replayConn returns the sniffed bytes before reading on.
type replayConn struct {
	net.Conn
	head []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
