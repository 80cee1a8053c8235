package dtlsrec

import (
	"bytes"
	"errors"
	"testing"
)

func pair(t testing.TB, suite uint16) (server, client *Conn) {
	t.Helper()
	p := Params{Suite: suite, MasterSecret: bytes.Repeat([]byte{7}, 48), Epoch: 1}
	for i := range 32 {
		p.ClientRandom[i], p.ServerRandom[i] = byte(i), byte(100+i)
	}
	p.IsServer = true
	server, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	p.IsServer = false
	client, err = New(p)
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

func seal(t testing.TB, c *Conn, msg string) []byte {
	t.Helper()
	buf := make([]byte, Headroom+len(msg)+TagLen)
	copy(buf[Headroom:], msg)
	rec, err := c.Seal(buf, len(msg))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(rec)
}

func TestRoundTrip(t *testing.T) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256} {
		server, client := pair(t, suite)
		for i, msg := range []string{"\x00hello", "", "\x03" + string(make([]byte, 1400))} {
			rec := seal(t, server, msg)
			if n, err := RecordLen(rec); err != nil || n != len(rec) || !IsApplicationData(rec, 1) {
				t.Fatalf("record %d: length %d %v", i, n, err)
			}
			pt, err := client.Open(rec)
			if err != nil || string(pt) != msg {
				t.Fatalf("suite %#x record %d: %q %v", suite, i, pt, err)
			}
			// The other direction has its own keys: a record never opens with the sender's own Conn.
			if _, err := server.Open(seal(t, server, msg)); !errors.Is(err, ErrAuth) {
				t.Fatalf("own record opened: %v", err)
			}
		}
	}
}

func TestReplayAndTamper(t *testing.T) {
	server, client := pair(t, TLS_PSK_WITH_AES_128_GCM_SHA256)
	var recs [][]byte
	for range 74 {
		recs = append(recs, seal(t, server, "x"))
	}
	top := len(recs) - 1
	if _, err := client.Open(bytes.Clone(recs[top])); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Open(bytes.Clone(recs[top])); !errors.Is(err, ErrReplay) {
		t.Errorf("replay: %v", err)
	}
	// RFC 6347's window of 64 records: the highest and the 63 below it.
	if _, err := client.Open(bytes.Clone(recs[top-63])); err != nil { // at the window's edge, out of order
		t.Errorf("reordered: %v", err)
	}
	if _, err := client.Open(bytes.Clone(recs[top-64])); !errors.Is(err, ErrReplay) { // just beyond it: too old
		t.Errorf("too old: %v", err)
	}
	bad := bytes.Clone(recs[20])
	bad[len(bad)-1] ^= 1
	if _, err := client.Open(bad); !errors.Is(err, ErrAuth) {
		t.Errorf("tampered: %v", err)
	}
	// A forged record does not move the window: the genuine one still opens.
	if _, err := client.Open(bytes.Clone(recs[20])); err != nil {
		t.Errorf("after a forgery: %v", err)
	}
	if _, err := client.Open(recs[21][:20]); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
	other := bytes.Clone(recs[22])
	other[4] = 2 // epoch 2
	if _, err := client.Open(other); !errors.Is(err, ErrNotApplicationData) {
		t.Errorf("other epoch: %v", err)
	}
	if _, err := New(Params{Suite: 0x00ae, MasterSecret: make([]byte, 48)}); !errors.Is(err, ErrSuite) {
		t.Errorf("CBC suite: %v", err)
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256} {
		server, client := pair(t, suite)
		buf := make([]byte, Headroom+1401+TagLen)
		if n := testing.AllocsPerRun(1000, func() {
			rec, err := server.Seal(buf, 1401)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.Open(rec); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("suite %#x: %v allocations per record", suite, n)
		}
	}
}

func FuzzOpen(f *testing.F) {
	server, _ := pair(f, TLS_PSK_WITH_AES_128_GCM_SHA256)
	f.Add(seal(f, server, "\x00hello"))
	f.Add([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, client := pair(t, TLS_PSK_WITH_AES_128_GCM_SHA256)
		for len(b) > 0 {
			n, err := RecordLen(b)
			if err != nil {
				return
			}
			_, _ = client.Open(b[:n])
			b = b[n:]
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256} {
		b.Run(map[uint16]string{TLS_PSK_WITH_AES_128_GCM_SHA256: "aes128gcm", TLS_PSK_WITH_AES_256_GCM_SHA384: "aes256gcm",
			TLS_PSK_WITH_CHACHA20_POLY1305_SHA256: "chacha20"}[suite], func(b *testing.B) {
			server, client := pair(b, suite)
			buf := make([]byte, Headroom+1401+TagLen)
			b.SetBytes(1401)
			b.ReportAllocs()
			for b.Loop() {
				rec, _ := server.Seal(buf, 1401)
				if _, err := client.Open(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
