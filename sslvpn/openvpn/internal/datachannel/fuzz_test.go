package datachannel

import (
	"bytes"
	"testing"

	"toride/sslvpn/openvpn/internal/wire"
)

// FuzzDecrypt: arbitrary data packets against every cipher never panic; a packet that authenticates has a
// plaintext that re-encrypts and decrypts to itself.
func FuzzDecrypt(f *testing.F) {
	for _, s := range suites {
		server, _ := testKeys(f, s.cipher, s.digest)
		f.Add(seal(f, server, []byte("seed"), wire.NewDataHeader(0, 1)))
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, s := range suites {
			server, client := testKeys(t, s.cipher, s.digest)
			h, err := wire.ParseDataHeader(pkt)
			if err != nil {
				return
			}
			plain, err := client.Decrypt(append([]byte(nil), pkt...), h.Len)
			if err != nil {
				continue
			}
			plain = append([]byte(nil), plain...)
			_, fresh := testKeys(t, s.cipher, s.digest)
			back, err := fresh.Decrypt(seal(t, server, plain, h), h.Len)
			if err != nil || !bytes.Equal(back, plain) {
				t.Fatalf("%s: re-encrypted plaintext: %v", s.cipher, err)
			}
			_ = Classify(plain)
		}
	})
}
