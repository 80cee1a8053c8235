package keymethod

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse: key-method 2 messages, as the client (and the server) send them. Whatever parses re-encodes to a
// message that parses to the same value.
func FuzzParse(f *testing.F) {
	c, _ := NewClientMessage("V4,dev-type tun,cipher AES-256-GCM", "alice", "secret", "IV_VER=2.6.14\n")
	f.Add(c.Append(nil), true)
	s, _ := NewServerMessage("V4,tls-server")
	f.Add(s.Append(nil), false)
	f.Fuzz(func(t *testing.T, b []byte, client bool) {
		m, err := Parse(b, client)
		if err != nil {
			return
		}
		again, err := Parse(m.Append(nil), client)
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v", err)
		}
		if diff := cmp.Diff(again, m); diff != "" {
			t.Fatalf("round trip (-got +want):\n%s", diff)
		}
		_ = ParsePeerInfo(m.PeerInfo)
		_, _ = OptionValue(m.Options, "cipher")
	})
}

// FuzzPeerInfo: peer-info strings; the variables survive a round trip.
func FuzzPeerInfo(f *testing.F) {
	f.Add("IV_VER=2.6.14\nIV_PLAT=linux\nIV_PROTO=990\nIV_CIPHERS=AES-256-GCM:AES-128-GCM\n")
	f.Fuzz(func(t *testing.T, s string) {
		p := ParsePeerInfo(s)
		q := ParsePeerInfo(p.String())
		if diff := cmp.Diff(q.Vars, p.Vars); diff != "" && len(p.Vars) < MaxPeerInfoVars {
			t.Fatalf("round trip (-got +want):\n%s", diff)
		}
	})
}
