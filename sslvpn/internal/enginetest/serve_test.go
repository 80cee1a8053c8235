package enginetest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

var errClosed = errors.New("closed")

// echoEngine echoes every connection until the context ends or it is closed; a packet socket is served until
// then too.
type echoEngine struct {
	closed atomic.Bool
	done   chan struct{}
}

func (e *echoEngine) Close() error {
	if e.closed.CompareAndSwap(false, true) {
		close(e.done)
	}
	return nil
}

func (e *echoEngine) ServeConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_, err := io.Copy(c, c)
	return err
}

func (e *echoEngine) ServePackets(ctx context.Context, pc net.PacketConn) error {
	if e.closed.Load() {
		return errClosed
	}
	select {
	case <-ctx.Done():
	case <-e.done:
	}
	return nil
}

func TestServedClosesTheEngineAndItsConnections(t *testing.T) {
	e := &echoEngine{done: make(chan struct{})}
	var conn net.Conn
	t.Run("serve", func(t *testing.T) {
		s := Serve(t, e.Close, errClosed, 5*time.Second)
		ln := s.ListenStream(nil, "127.0.0.1:0", e.ServeConn)
		s.ListenPackets(nil, "127.0.0.1:0", e.ServePackets)
		var err error
		if conn, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo %q %v", buf, err)
		}
		// A reset reaches the client as one, and the engine's answer is kept.
		s.CloseConns(true)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(buf); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("read after a reset: %v, want a connection reset", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(s.Results()) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if len(s.Results()) != 1 {
			t.Errorf("results %v, want the one connection's", s.Results())
		}
	})
	if !e.closed.Load() {
		t.Error("the engine was not closed at the end of the test")
	}
}

func TestServedPacketsAfterClose(t *testing.T) {
	e := &echoEngine{done: make(chan struct{})}
	e.Close()
	// Serving a closed engine ends at once and is no failure: a short test may close it that soon.
	s := Serve(t, e.Close, errClosed, 5*time.Second)
	s.ListenPackets(nil, "127.0.0.1:0", e.ServePackets)
	s.Stop()
}
