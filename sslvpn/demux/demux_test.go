package demux

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		want Protocol
	}{
		{"TLS 1.2 ClientHello record", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, TLS},
		// A stock client's first TCP packet: a 14-byte-or-longer hard reset, opcode 7 in the high five bits.
		{"OpenVPN hard reset v2", []byte{0x00, 0x0e, 0x38}, OpenVPNTCP},
		{"OpenVPN hard reset v3 (tls-crypt-v2)", []byte{0x01, 0x2a, 0x50}, OpenVPNTCP},
		{"OpenVPN with a key id", []byte{0x00, 0x0e, 0x39}, Unknown},
		{"OpenVPN control packet first", []byte{0x00, 0x20, 0x20}, Unknown},
		{"plain HTTP", []byte("GET / HTTP/1.1"), Unknown},
		{"SSH", []byte("SSH-2.0"), Unknown},
		{"too short", []byte{0x16}, Unknown},
	} {
		if got := Classify(tt.b); got != tt.want {
			t.Errorf("%s: Classify(% x) = %s, want %s", tt.name, tt.b, got, tt.want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte{0x16, 0x03, 0x01})
	f.Add([]byte{0x00, 0x0e, 0x38, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Classify(b)
		if p == TLS && (b[0] != 0x16 || b[1] != 0x03) {
			t.Fatal("TLS without a handshake record")
		}
	})
}

// TestServeSharesThePort runs a real TLS client and an OpenVPN-looking client against one listener; each
// handler sees its protocol's stream from the first byte, and junk is closed.
func TestServeSharesThePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t)
	got := make(chan string, 4)
	var rejected sync.WaitGroup
	rejected.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- New(Options{FirstBytesTimeout: time.Second, Rejected: func(net.Addr, error) { rejected.Done() }}).Serve(ctx, ln, map[Protocol]Handler{
			TLS: func(_ context.Context, c net.Conn) {
				defer c.Close()
				s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				if err := s.Handshake(); err != nil {
					got <- "tls error " + err.Error()
					return
				}
				got <- "tls ok"
			},
			OpenVPNTCP: func(_ context.Context, c net.Conn) {
				defer c.Close()
				b := make([]byte, 16)
				if _, err := io.ReadFull(c, b); err != nil {
					got <- "openvpn error"
					return
				}
				got <- "openvpn " + string(b[3:])
			},
		})
	}()

	c1, _ := net.Dial("tcp", ln.Addr().String())
	tc := tls.Client(c1, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	c2, _ := net.Dial("tcp", ln.Addr().String())
	c2.Write(append([]byte{0x00, 0x0e, 0x38}, "hello-openvpn"...))
	c3, _ := net.Dial("tcp", ln.Addr().String())
	c3.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	want := map[string]bool{"tls ok": true, "openvpn hello-openvpn": true}
	for range 2 {
		select {
		case s := <-got:
			if !want[s] {
				t.Fatalf("handler said %q", s)
			}
			delete(want, s)
		case <-time.After(5 * time.Second):
			t.Fatal("a handler never ran")
		}
	}
	rejected.Wait()
	if n, _ := c3.Read(make([]byte, 1)); n != 0 {
		t.Fatal("junk connection was answered")
	}
	c2.Close()
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
