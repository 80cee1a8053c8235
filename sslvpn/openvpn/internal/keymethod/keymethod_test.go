package keymethod

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The expected output was computed with OpenSSL: openssl kdf -keylen 48 -kdfopt digest:MD5-SHA1
// -kdfopt hexsecret:ab..(48 bytes) -kdfopt hexseed:<"OpenVPN master secret"><cd x 64> TLS1-PRF
func TestPRF10KnownAnswer(t *testing.T) {
	secret := bytes.Repeat([]byte{0xab}, 48)
	seed := bytes.Repeat([]byte{0xcd}, 64)
	out := make([]byte, 48)
	PRF10(out, secret, "OpenVPN master secret", seed)
	want := "fcef7f29701778cf522ab2da815d13d98f3145f03044ad8c38202b04ed3809c3f87f116f8786628019ac038cf985256a"
	if got := hex.EncodeToString(out); got != want {
		t.Errorf("PRF10 =\n%s, want\n%s", got, want)
	}
}

func TestDeriveKeysPRFDependsOnEverything(t *testing.T) {
	c, _ := NewClientMessage("V4", "", "", "")
	s, _ := NewServerMessage("V4")
	base := DeriveKeysPRF(c, s, [8]byte{1}, [8]byte{2})
	if *base == *DeriveKeysPRF(c, s, [8]byte{1}, [8]byte{3}) || *base == *DeriveKeysPRF(c, s, [8]byte{4}, [8]byte{2}) {
		t.Error("session ids do not change the keys")
	}
	c2 := *c
	c2.Random2[0] ^= 1
	if *base == *DeriveKeysPRF(&c2, s, [8]byte{1}, [8]byte{2}) {
		t.Error("random2 does not change the keys")
	}
	if *base != *DeriveKeysPRF(c, s, [8]byte{1}, [8]byte{2}) {
		t.Error("not deterministic")
	}
}

func TestDeriveKeysEKM(t *testing.T) {
	var gotLabel string
	var gotCtx []byte = []byte("unset")
	km, err := DeriveKeysEKM(func(label string, ctx []byte, n int) ([]byte, error) {
		gotLabel, gotCtx = label, ctx
		return bytes.Repeat([]byte{7}, n), nil
	})
	if err != nil || gotLabel != "EXPORTER-OpenVPN-datakeys" || gotCtx != nil || km[255] != 7 {
		t.Errorf("EKM: %v label %q context %v", err, gotLabel, gotCtx)
	}
	if _, err := DeriveKeysEKM(func(string, []byte, int) ([]byte, error) { return nil, errors.New("no EMS") }); err == nil {
		t.Error("exporter error not returned")
	}
}

func TestMessageRoundTrip(t *testing.T) {
	c, _ := NewClientMessage("V4,dev-type tun,cipher AES-128-CBC", "alice", "SCRV1:AA==:MTIz", "IV_VER=2.6.14\nIV_PROTO=990\n")
	s, _ := NewServerMessage("V4,tls-server")
	old := &Message{IsClient: true, Options: "V4"} // a pre-2.x peer: nothing after the options
	for _, tc := range []struct {
		name string
		m    *Message
	}{{"client", c}, {"server", s}, {"old client", old}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.m.Validate(); err != nil {
				t.Fatal(err)
			}
			b := tc.m.Append(nil)
			if tc.name == "old client" {
				b = b[:5+PreMasterLen+2*RandomLen+2+len("V4")+1]
			}
			back, err := Parse(b, tc.m.IsClient)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(back, tc.m); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestServerMessageLayout(t *testing.T) {
	s := &Message{Options: "V4", HasPeerInfo: true}
	b := s.Append(nil)
	want := append([]byte{0, 0, 0, 0, 2}, make([]byte, 64)...)
	want = append(want, 0, 3, 'V', '4', 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Equal(b, want) {
		t.Errorf("server message\n%x, want\n%x", b, want)
	}
}

func TestParseErrors(t *testing.T) {
	good := (&Message{IsClient: true, Options: "V4", HasPeerInfo: true}).Append(nil)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"key method 1", []byte{0, 0, 0, 0, 1}, ErrMethod},
		{"truncated randoms", good[:60], ErrMalformed},
		{"empty options", append(append([]byte{}, good[:5+48+64]...), 0, 0), ErrMalformed},
		{"options too long", append(append([]byte{}, good[:5+48+64]...), 0xff, 0xff), ErrTooLong},
		{"truncated password", good[:len(good)-3], ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.b, true); !errors.Is(err, tc.want) {
				t.Errorf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPeerInfo(t *testing.T) {
	// Peer info as the stock 2.6.14 client sent it in the interop tests.
	raw := "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\nIV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\nIV_SSO=webauth,openurl,crtext\n"
	p := ParsePeerInfo(raw)
	if p.Version != "2.6.14" || p.Platform != "linux" || p.Proto != 990 || p.NCP != 2 || p.MTU != 1600 ||
		strings.Join(p.Ciphers, ":") != "AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305" || !p.HasCiphers {
		t.Errorf("parsed %+v", p)
	}
	if p.Proto&ProtoTLSKeyExport == 0 || p.Proto&ProtoRequestPush == 0 || p.Proto&ProtoCCExitNotify == 0 || p.Proto&ProtoDataV2 == 0 {
		t.Errorf("IV_PROTO bits %b", p.Proto)
	}
	if p.String() != raw {
		t.Errorf("String() =\n%q, want\n%q", p.String(), raw)
	}
	if v, ok := p.Get("IV_SSO"); !ok || v != "webauth,openurl,crtext" {
		t.Errorf("Get = %q %v", v, ok)
	}
	if q := ParsePeerInfo("junk\n=x\nIV_PROTO=nope\n"); q.Proto != 0 || len(q.Vars) != 1 {
		t.Errorf("malformed peer info: %+v", q)
	}
}

func TestOptionValue(t *testing.T) {
	opts := "V4,dev-type tun,link-mtu 1559,tun-mtu 1500,proto TCPv4_CLIENT,cipher AES-128-CBC,auth SHA1,keysize 128,key-method 2,tls-client"
	for key, want := range map[string]string{"cipher": "AES-128-CBC", "auth": "SHA1", "tls-client": "", "V4": ""} {
		if v, ok := OptionValue(opts, key); !ok || v != want {
			t.Errorf("%s = %q %v, want %q", key, v, ok, want)
		}
	}
	if _, ok := OptionValue(opts, "comp-lzo"); ok {
		t.Error("absent option found")
	}
}
