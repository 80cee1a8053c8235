package datachannel

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/wire"
)

func testKeys(t testing.TB, cipher, digest string) (server, client *Keys) {
	t.Helper()
	c, ok := LookupCipher(cipher)
	if !ok {
		t.Fatalf("no cipher %s", cipher)
	}
	d, _ := LookupDigest(digest)
	var km keymethod.KeyMaterial
	for i := range km {
		km[i] = byte(i)
	}
	var err error
	if server, err = New(c, d, &km, true); err != nil {
		t.Fatal(err)
	}
	if client, err = New(c, d, &km, false); err != nil {
		t.Fatal(err)
	}
	return server, client
}

var suites = []struct{ cipher, digest string }{
	{"AES-256-GCM", ""}, {"AES-128-GCM", ""}, {"CHACHA20-POLY1305", ""},
	{"AES-128-CBC", "SHA1"}, {"AES-256-CBC", "SHA1"}, {"AES-128-CBC", "SHA256"}, {"AES-256-CBC", "SHA512"},
}

func seal(t testing.TB, k *Keys, payload []byte, h wire.DataHeader) []byte {
	buf := make([]byte, Headroom+len(payload)+Tailroom)
	copy(buf[Headroom:], payload)
	pkt, err := k.Encrypt(buf, Headroom, len(payload), h)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), pkt...)
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		for _, hdr := range []wire.DataHeader{wire.NewDataHeader(3, 0x123456), wire.NewDataHeader(1, wire.NoPeerID)} {
			t.Run(fmt.Sprintf("%s-%s-%v", s.cipher, s.digest, hdr.Opcode), func(t *testing.T) {
				server, client := testKeys(t, s.cipher, s.digest)
				for _, n := range []int{0, 1, 11, 12, 15, 16, 17, 100, 1400, 1500} {
					payload := bytes.Repeat([]byte{byte(n)}, n)
					pkt := seal(t, server, payload, hdr)
					if len(pkt)-n > server.Overhead(hdr.Len) {
						t.Errorf("%d bytes: overhead %d > %d", n, len(pkt)-n, server.Overhead(hdr.Len))
					}
					h, err := wire.ParseDataHeader(pkt)
					if err != nil || h != hdr {
						t.Fatalf("header %+v %v, want %+v", h, err, hdr)
					}
					got, err := client.Decrypt(pkt, h.Len)
					if err != nil {
						t.Fatalf("%d bytes: %v", n, err)
					}
					if !bytes.Equal(got, payload) {
						t.Fatalf("%d bytes: got %x", n, got)
					}
					// The server cannot decrypt its own packets: directions use different keys.
					if _, err := server.Decrypt(seal(t, server, payload, hdr), h.Len); err == nil {
						t.Fatal("reflected packet accepted")
					}
				}
			})
		}
	}
}

func TestTamperAndReplay(t *testing.T) {
	for _, s := range suites {
		t.Run(s.cipher+"-"+s.digest, func(t *testing.T) {
			server, client := testKeys(t, s.cipher, s.digest)
			hdr := wire.NewDataHeader(0, 7)
			pkt := seal(t, server, []byte("an IP packet, honest"), hdr)
			for i := range pkt {
				if !AEADCovers(s.cipher, i, hdr.Len) {
					continue // CBC does not authenticate the header
				}
				bad := append([]byte(nil), pkt...)
				bad[i] ^= 1
				if _, err := client.Decrypt(bad, hdr.Len); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("flipped byte %d accepted", i)
				}
			}
			if _, err := client.Decrypt(append([]byte(nil), pkt...), hdr.Len); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Decrypt(append([]byte(nil), pkt...), hdr.Len); !errors.Is(err, ErrReplay) {
				t.Fatalf("replay: %v", err)
			}
			if _, err := client.Decrypt(pkt[:hdr.Len+3], hdr.Len); !errors.Is(err, ErrShort) {
				t.Fatalf("short: %v", err)
			}
		})
	}
}

// TestReplayWindow: a packet arriving late is taken while its packet id is at most 1984 below the highest one
// received, and refused beyond.
func TestReplayWindow(t *testing.T) {
	server, client := testKeys(t, "AES-256-GCM", "")
	hdr := wire.NewDataHeader(0, 7)
	var pkts [][]byte
	for range 1986 {
		pkts = append(pkts, seal(t, server, []byte("x"), hdr)) // packet ids 1 to 1986
	}
	if _, err := client.Decrypt(pkts[1985], hdr.Len); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Decrypt(pkts[1], hdr.Len); err != nil { // id 2, 1984 below
		t.Errorf("at the window's edge: %v", err)
	}
	if _, err := client.Decrypt(pkts[0], hdr.Len); !errors.Is(err, ErrReplay) { // id 1, 1985 below
		t.Errorf("beyond the window: %v", err)
	}
}

// AEADCovers says whether byte i of a packet is authenticated.
func AEADCovers(cipher string, i, hdrLen int) bool {
	c, _ := LookupCipher(cipher)
	return c.AEAD || i >= hdrLen
}

func TestRoomChecks(t *testing.T) {
	server, _ := testKeys(t, "AES-256-GCM", "")
	buf := make([]byte, 100)
	if _, err := server.Encrypt(buf, 10, 10, wire.NewDataHeader(0, 1)); !errors.Is(err, ErrRoom) {
		t.Errorf("no headroom: %v", err)
	}
	if _, err := server.Encrypt(buf, Headroom, 100-Headroom, wire.NewDataHeader(0, 1)); !errors.Is(err, ErrRoom) {
		t.Errorf("no tailroom: %v", err)
	}
}

func TestPacketIDExhausted(t *testing.T) {
	server, _ := testKeys(t, "AES-128-GCM", "")
	server.sendPID.Store(^uint32(0))
	buf := make([]byte, 200)
	if _, err := server.Encrypt(buf, Headroom, 10, wire.NewDataHeader(0, 1)); !errors.Is(err, ErrPIDWrap) {
		t.Errorf("wrap: %v", err)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want Kind
	}{
		{PingPayload[:], KindPing},
		{append(OCCMagic[:], OCCExit), KindExit},
		{append(OCCMagic[:], 0), KindOCC},
		{[]byte{0x45, 0, 0, 20}, KindIP},
		{append(PingPayload[:], 0), KindIP},
		{nil, KindIP},
	} {
		if got := Classify(tc.p); got != tc.want {
			t.Errorf("Classify(%x) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	for _, s := range suites {
		t.Run(s.cipher+"-"+s.digest, func(t *testing.T) {
			server, client := testKeys(t, s.cipher, s.digest)
			hdr := wire.NewDataHeader(0, 1)
			buf := make([]byte, Headroom+1400+Tailroom)
			if n := testing.AllocsPerRun(200, func() {
				pkt, err := server.Encrypt(buf, Headroom, 1400, hdr)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := client.Decrypt(pkt, hdr.Len); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%v allocations per encrypt+decrypt", n)
			}
		})
	}
}

func BenchmarkEncrypt(b *testing.B) {
	for _, s := range suites {
		b.Run(strings.TrimSuffix(s.cipher+"-"+s.digest, "-"), func(b *testing.B) {
			server, _ := testKeys(b, s.cipher, s.digest)
			hdr := wire.NewDataHeader(0, 1)
			buf := make([]byte, Headroom+1400+Tailroom)
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				if server.SentPackets() > 1<<31 {
					server.sendPID.Store(0)
				}
				if _, err := server.Encrypt(buf, Headroom, 1400, hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, s := range suites {
		b.Run(strings.TrimSuffix(s.cipher+"-"+s.digest, "-"), func(b *testing.B) {
			server, client := testKeys(b, s.cipher, s.digest)
			hdr := wire.NewDataHeader(0, 1)
			// Pre-encrypt a ring of packets; decrypting in place destroys them, so restore from a copy.
			const ring = 1024
			orig := make([][]byte, ring)
			for i := range orig {
				orig[i] = seal(b, server, bytes.Repeat([]byte{1}, 1400), hdr)
			}
			work := make([]byte, len(orig[0]))
			b.SetBytes(1400)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%ring == 0 && i > 0 {
					// Packet ids repeat after a ring: re-key the receiver's window.
					client.filter.Reset()
				}
				copy(work, orig[i%ring])
				if _, err := client.Decrypt(work, hdr.Len); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
