package enginetest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"toride/tests/lab"
)

// Served is an engine serving sockets for one test: each accepted connection on a goroutine of its own, each
// packet socket on one. Every goroutine ends before the test does. Its methods are safe for concurrent use.
type Served struct {
	t      testing.TB
	closed error // the engine's answer to serving after its Close
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners []net.Listener
	conns     []net.Conn // accepted, for CloseConns
	results   []error    // of serving each connection, in the order they ended
}

// Serve prepares to serve an engine. At the test's cleanup it ends the context given to the engine, closes the
// listeners, calls shutdown (the engine's Close) and waits for every goroutine: the test fails if that takes longer
// than within. closed is the error the engine returns when asked to serve after its Close.
func Serve(t testing.TB, shutdown func() error, closed error, within time.Duration) *Served {
	s := &Served{t: t, closed: closed}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() {
		s.closeListeners()
		done := make(chan struct{})
		go func() {
			shutdown()
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(within):
			t.Errorf("the engine did not shut down within %v", within)
		}
	})
	return s
}

// Context is the context the engine is served with.
func (s *Served) Context() context.Context { return s.ctx }

// ListenStream opens a TCP listener on addr ("127.0.0.1:0") in ns (nil: the test's own namespace) and serves
// it.
func (s *Served) ListenStream(ns *lab.Netns, addr string, serve func(context.Context, net.Conn) error) net.Listener {
	s.t.Helper()
	var ln net.Listener
	if err := in(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		s.t.Fatal(err)
	}
	s.Stream(ln, serve)
	return ln
}

// ListenPackets opens a UDP socket on addr in ns (nil: the test's own namespace) and serves it.
func (s *Served) ListenPackets(ns *lab.Netns, addr string, serve func(context.Context, net.PacketConn) error) net.PacketConn {
	s.t.Helper()
	var pc net.PacketConn
	if err := in(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		s.t.Fatal(err)
	}
	s.Packets(pc, serve)
	return pc
}

func in(ns *lab.Netns, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return ns.Do(fn)
}

// Stream serves every connection ln accepts until the listener is closed; it closes ln when the test ends.
func (s *Served) Stream(ln net.Listener, serve func(context.Context, net.Conn) error) {
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				err := serve(s.ctx, c)
				s.mu.Lock()
				s.results = append(s.results, err)
				s.mu.Unlock()
			}()
		}
	}()
}

// Packets serves pc until serve returns (the context ended, or the engine closed), then closes it; an error
// from serve fails the test, unless the engine was closed before this goroutine began serving (a short test may
// end that soon).
func (s *Served) Packets(pc net.PacketConn, serve func(context.Context, net.PacketConn) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(s.ctx, pc); err != nil && !errors.Is(err, s.closed) {
			s.t.Errorf("serving %s: %v", pc.LocalAddr(), err)
		}
		pc.Close()
	}()
}

// closeListeners ends the context and closes the listeners.
func (s *Served) closeListeners() {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// Stop ends the context, closes the listeners and waits for every goroutine, without closing the engine.
func (s *Served) Stop() {
	s.closeListeners()
	s.wg.Wait()
}

// CloseConns closes every connection accepted so far from the server's side, as a broken network would; with
// reset, the peer gets a TCP reset rather than a FIN.
func (s *Served) CloseConns(reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if tc, ok := c.(*net.TCPConn); ok && reset {
			tc.SetLinger(0)
		}
		c.Close()
	}
	s.conns = nil
}

// Results are the errors the engine returned for the connections it has finished serving.
func (s *Served) Results() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.results...)
}
