package tlscrypt

import (
	"testing"
	"time"

	"toride/sslvpn/openvpn/internal/wire"
)

// FuzzUnwrap: arbitrary packets against the fixed test key (the key the interop tests give the stock client,
// so captured packets in the corpus authenticate and reach the body parser). Wrapping what unwraps gives a
// packet that unwraps to the same body.
func FuzzUnwrap(f *testing.F) {
	c := New(testKey(), false)
	p := wire.ControlPacket{Opcode: wire.ControlHardResetClientV2, SessionID: wire.SessionID{1}}
	pkt, _ := c.Wrap(nil, p.AppendHeader(nil), p.AppendBody(nil), time.Unix(1, 0))
	f.Add(pkt)
	f.Fuzz(func(t *testing.T, b []byte) {
		server := New(testKey(), true)
		body, err := server.Unwrap(nil, b)
		if err != nil {
			return
		}
		var cp wire.ControlPacket
		cp.Opcode, _ = wire.SplitHeader(b[0])
		_ = cp.ParseBody(body)
		client := New(testKey(), false)
		again, err := client.Wrap(nil, b[:wire.ControlHeaderLen], body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body2, err := New(testKey(), true).Unwrap(nil, again)
		if err != nil || string(body2) != string(body) {
			t.Fatalf("rewrapped packet: %v", err)
		}
	})
}
