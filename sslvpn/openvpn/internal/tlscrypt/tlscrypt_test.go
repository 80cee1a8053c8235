package tlscrypt

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"toride/sslvpn/openvpn/internal/wire"
)

func testKey() *Key {
	var k Key
	for i := range k {
		k[i] = byte(i*31 + 7)
	}
	return &k
}

func TestKeyFileRoundTrip(t *testing.T) {
	k := testKey()
	back, err := ParseKey(k.Marshal())
	if err != nil || *back != *k {
		t.Fatalf("ParseKey(Marshal) = %v", err)
	}
	for name, text := range map[string]string{
		"no markers": "abcd",
		"short":      "-----BEGIN OpenVPN Static key V1-----\nabcd\n-----END OpenVPN Static key V1-----\n",
		"not hex":    "-----BEGIN OpenVPN Static key V1-----\nzz\n-----END OpenVPN Static key V1-----\n",
		"no end":     "-----BEGIN OpenVPN Static key V1-----\n",
	} {
		if _, err := ParseKey([]byte(text)); !errors.Is(err, ErrKeyFile) {
			t.Errorf("%s: %v, want ErrKeyFile", name, err)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	client, server := New(testKey(), false), New(testKey(), true)
	p := wire.ControlPacket{Opcode: wire.ControlV1, SessionID: wire.SessionID{1}, MessageID: 3, Payload: []byte("hello tls")}
	now := time.Unix(1700000000, 0)
	pkt, err := client.Wrap(nil, p.AppendHeader(nil), p.AppendBody(nil), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) != wire.ControlHeaderLen+Overhead+p.BodyLen() {
		t.Errorf("wrapped length %d", len(pkt))
	}
	if bytes.Contains(pkt, []byte("hello tls")) {
		t.Error("payload in the clear")
	}
	body, err := server.Unwrap(nil, pkt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, p.AppendBody(nil)) {
		t.Errorf("unwrapped %x", body)
	}
	if _, err := server.Unwrap(nil, pkt); !errors.Is(err, ErrReplay) {
		t.Errorf("replay: %v", err)
	}
	// The server's own direction does not verify as the client's.
	if _, err := client.Unwrap(nil, pkt); !errors.Is(err, ErrAuth) {
		t.Errorf("reflected packet: %v", err)
	}
	for i := range pkt {
		bad := append([]byte(nil), pkt...)
		bad[i] ^= 0x40
		if _, err := New(testKey(), true).Unwrap(nil, bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	if _, err := server.Unwrap(nil, pkt[:20]); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
}

func TestPacketIDAndSendPacketID(t *testing.T) {
	client, server := New(testKey(), false), New(testKey(), true)
	client.SetSendPacketID(41)
	p := wire.ControlPacket{Opcode: wire.AckV1, SessionID: wire.SessionID{1}}
	at := time.Unix(1700000000, 0)
	pkt, err := client.Wrap(nil, p.AppendHeader(nil), p.AppendBody(nil), at)
	if err != nil {
		t.Fatal(err)
	}
	id, sent, err := PacketID(pkt)
	if err != nil || id != 42 || !sent.Equal(at) {
		t.Fatalf("PacketID = %d, %v, %v; want 42, %v", id, sent, err, at)
	}
	if _, err := server.Unwrap(nil, pkt); err != nil {
		t.Fatal(err)
	}
	if _, _, err := PacketID(pkt[:20]); !errors.Is(err, ErrShort) {
		t.Errorf("PacketID of a short packet: %v", err)
	}
}
