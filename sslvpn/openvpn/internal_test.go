package openvpn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/wire"
)

func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"s"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

type nopBackend struct{}

func (nopBackend) Connect(context.Context, *ConnectRequest, Session) (*Grant, error) {
	return nil, errors.New("no")
}
func (nopBackend) Disconnected(Session, error) {}

func TestConfigValidation(t *testing.T) {
	tc := selfSigned(t)
	for _, c := range []struct {
		name string
		cfg  Config
		want string // substring of the error, "" for valid
	}{
		{"defaults", Config{TLS: tc}, ""},
		{"seed legacy", Config{TLS: tc, DataCiphers: []string{"AES-128-CBC"}, Auth: "sha1"}, ""},
		{"no TLS", Config{}, "TLS: a server certificate configuration is required"},
		{"no certificate", Config{TLS: &tls.Config{}}, "no server certificate"},
		{"unknown cipher", Config{TLS: tc, DataCiphers: []string{"BF-CBC"}}, `"BF-CBC" is not supported`},
		{"unknown digest with CBC", Config{TLS: tc, DataCiphers: []string{"AES-128-CBC"}, Auth: "MD5"}, `Auth: "MD5"`},
		{"bad tls-crypt key", Config{TLS: tc, TLSCrypt: []byte("nope")}, "TLSCrypt"},
		{"keepalive", Config{TLS: tc, Keepalive: 10 * time.Second, KeepaliveTimeout: 15 * time.Second}, "at least twice"},
		{"fractional keepalive", Config{TLS: tc, Keepalive: 1500 * time.Millisecond, KeepaliveTimeout: 4 * time.Second}, "whole seconds"},
		{"negative", Config{TLS: tc, HandshakeTimeout: -1}, "HandshakeTimeout: must not be negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewServer(c.cfg, nopBackend{})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("NewServer = %v, want ErrConfig mentioning %q", err, c.want)
			}
		})
	}
	if _, err := NewServer(Config{TLS: tc}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil backend: %v", err)
	}
	s, _ := NewServer(Config{TLS: tc, DataCiphers: []string{"aes-128-gcm", "AES-256-CBC"}}, nopBackend{})
	if diff := cmp.Diff(s.Ciphers(), []string{"AES-128-GCM", "AES-256-CBC"}); diff != "" {
		t.Errorf("ciphers (-got +want)\n%s", diff)
	}
	if s.cfg.tls == tc || s.cfg.tls.MinVersion != tls.VersionTLS12 || !s.cfg.tls.SessionTicketsDisabled {
		t.Error("TLS config not cloned and hardened")
	}
}

func TestGrantPushOptions(t *testing.T) {
	up := uplinkFunc(func([]byte) error { return nil })
	for _, tc := range []struct {
		name string
		g    Grant
		want []string
		err  bool
	}{
		{"subnet split tunnel", Grant{Uplink: up, Address: netip.MustParsePrefix("10.8.0.2/24"), Gateway: netip.MustParseAddr("10.8.0.1"),
			Routes: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/24"), netip.MustParsePrefix("10.50.0.53/32")}, DNS: []netip.Addr{netip.MustParseAddr("10.50.0.53")}},
			[]string{"route 10.50.0.0 255.255.255.0", "route 10.50.0.53 255.255.255.255", "dhcp-option DNS 10.50.0.53",
				"route-gateway 10.8.0.1", "topology subnet", "ifconfig 10.8.0.2 255.255.255.0"}, false},
		{"net30 full tunnel", Grant{Uplink: up, Topology: TopologyNet30, Address: netip.MustParsePrefix("10.8.0.6/30"), Gateway: netip.MustParseAddr("10.8.0.5"),
			RedirectGateway: true, ExtraPush: []string{"dhcp-option DOMAIN corp.example"}},
			[]string{"redirect-gateway def1", "topology net30", "dhcp-option DOMAIN corp.example", "ifconfig 10.8.0.6 10.8.0.5"}, false},
		{"no uplink", Grant{Address: netip.MustParsePrefix("10.8.0.2/24"), Gateway: netip.MustParseAddr("10.8.0.1")}, nil, true},
		{"no address", Grant{Uplink: up, Gateway: netip.MustParseAddr("10.8.0.1")}, nil, true},
		{"comma in extra", Grant{Uplink: up, Address: netip.MustParsePrefix("10.8.0.2/24"), Gateway: netip.MustParseAddr("10.8.0.1"), ExtraPush: []string{"a,b"}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.g.pushOptions()
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("(-got +want)\n%s", diff)
			}
		})
	}
}

type uplinkFunc func([]byte) error

func (f uplinkFunc) WritePacket(p []byte) error { return f(p) }
func (f uplinkFunc) Flush()                     {}

func TestStaticChallenge(t *testing.T) {
	for _, tc := range []struct {
		in, pass, resp string
		ok             bool
	}{
		{"SCRV1::MTIzNDU2", "", "123456", true}, // the seed: empty password, OTP as response
		{FormatStaticChallenge("pin", "987654"), "pin", "987654", true},
		{"SCRV1:cGlu:", "pin", "", true},
		{"plain password", "", "", false},
		{"SCRV1:only-one-part", "", "", false},
		{"SCRV1:!!!:MTIz", "", "", false},
		{"SCRV1:MTIz:!!!", "", "", false},
	} {
		p, r, err := ParseStaticChallenge(tc.in)
		if (err == nil) != tc.ok || p != tc.pass || r != tc.resp {
			t.Errorf("ParseStaticChallenge(%q) = %q %q %v", tc.in, p, r, err)
		}
		if err != nil && !errors.Is(err, ErrNotStaticChallenge) {
			t.Errorf("error %v does not wrap ErrNotStaticChallenge", err)
		}
	}
}

func TestSniffTCP(t *testing.T) {
	reset := (&wire.ControlPacket{Opcode: wire.ControlHardResetClientV2}).Append(nil)
	framed := append([]byte{0, byte(len(reset))}, reset...)
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{framed, true},
		{[]byte{0x16, 0x03, 0x01, 0x02, 0x00}, false}, // TLS ClientHello: AnyConnect
		{[]byte("GET / HTTP/1.1"), false},
		{[]byte{0, 14, 0x39}, false}, // key id 1
		{framed[:2], false},
	} {
		if got := SniffTCP(tc.b); got != tc.want {
			t.Errorf("SniffTCP(%x) = %v", tc.b, got)
		}
	}
}

// discardLink keeps the last frame written.
type discardLink struct{ last []byte }

func (d *discardLink) writeFrames(f [][]byte) error {
	d.last = append(d.last[:0], f[len(f)-1]...)
	return nil
}
func (d *discardLink) close()         {}
func (d *discardLink) connected()     {}
func (d *discardLink) addr() net.Addr { return &net.UDPAddr{} }

// The per-packet path through a session, both ways, allocates nothing.
func TestSessionDataPathAllocatesNothing(t *testing.T) {
	for _, cipher := range []string{"AES-256-GCM", "CHACHA20-POLY1305", "AES-128-CBC"} {
		t.Run(cipher, func(t *testing.T) {
			srv, err := NewServer(Config{TLS: selfSigned(t)}, nopBackend{})
			if err != nil {
				t.Fatal(err)
			}
			l := &discardLink{last: make([]byte, 0, 4096)}
			s, err := newSession(srv, UDP, netip.MustParseAddrPort("192.0.2.1:1194"), l, wire.SessionID{1}, 5)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := datachannel.LookupCipher(cipher)
			d, _ := datachannel.LookupDigest("SHA1")
			var km keymethod.KeyMaterial
			serverKeys, _ := datachannel.New(c, d, &km, true)
			clientKeys, _ := datachannel.New(c, d, &km, false)
			s.keys.Store(&keySet{rx: [8]*datachannel.Keys{0: serverKeys}, tx: serverKeys, txHdr: wire.NewDataHeader(0, 5)})
			delivered := 0
			s.uplink.Store(&uplinkRef{uplinkFunc(func([]byte) error { delivered++; return nil })})
			ip := make([]byte, 1400)
			ip[0] = 0x45
			if n := testing.AllocsPerRun(200, func() {
				if !s.SendPacket(ip) {
					t.Fatal("SendPacket refused")
				}
				sent := s.counters.packetsOut.Load()
				s.sendQueued(<-s.txq)
				if s.counters.packetsOut.Load() != sent+1 {
					t.Fatal("not sent")
				}
			}); n != 0 {
				t.Errorf("send: %v allocations per packet", n)
			}
			if len(l.last) < 1400+frameHeadroom {
				t.Fatalf("frame of %d bytes", len(l.last))
			}
			buf := make([]byte, 2048)
			if n := testing.AllocsPerRun(200, func() {
				pkt, _ := clientKeys.Encrypt(buf, datachannel.Headroom, 1400, wire.NewDataHeader(0, 5))
				s.handleData(pkt)
			}); n != 0 {
				t.Errorf("receive: %v allocations per packet", n)
			}
			if delivered < 200 || s.counters.decryptErrors.Load() != 0 {
				t.Errorf("delivered %d, decrypt errors %d", delivered, s.counters.decryptErrors.Load())
			}
		})
	}
}

// BenchmarkForwardToClient is the LAN-to-client hot path of one session: the datapath hands a packet read from
// TUN to SendPacket (copy into a pooled buffer, queue), the session's sender encrypts it in place and writes the
// frame. The TUN read and the socket write are the datapath's and the kernel's; see sslvpn/datapath.
func BenchmarkForwardToClient(b *testing.B) {
	for _, cipher := range []string{"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305", "AES-128-CBC"} {
		b.Run(cipher, func(b *testing.B) {
			srv, err := NewServer(Config{TLS: selfSigned(b)}, nopBackend{})
			if err != nil {
				b.Fatal(err)
			}
			l := &discardLink{last: make([]byte, 0, 4096)}
			s, err := newSession(srv, UDP, netip.MustParseAddrPort("192.0.2.1:1194"), l, wire.SessionID{1}, 5)
			if err != nil {
				b.Fatal(err)
			}
			c, _ := datachannel.LookupCipher(cipher)
			d, _ := datachannel.LookupDigest("SHA1")
			var km keymethod.KeyMaterial
			keys, _ := datachannel.New(c, d, &km, true)
			s.keys.Store(&keySet{rx: [8]*datachannel.Keys{0: keys}, tx: keys, txHdr: wire.NewDataHeader(0, 5)})
			ip := make([]byte, 1400)
			ip[0] = 0x45
			b.SetBytes(int64(len(ip)))
			b.ReportAllocs()
			for b.Loop() {
				if !s.SendPacket(ip) {
					b.Fatal("SendPacket refused")
				}
				s.sendQueued(<-s.txq)
			}
		})
	}
}
