package openvpn_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/sslvpn/internal/enginetest"
	"toride/sslvpn/openvpn"
	"toride/sslvpn/openvpn/internal/wire"
	"toride/tests/lab"
	"toride/tests/ovpnclient"
)

const labPort = 1194

// interop is one real-client test: a server namespace running the engine in this process, a client namespace
// running the stock openvpn binary.
type interop struct {
	t      *testing.T
	lab    *enginetest.Lab
	pki    *testPKI
	be     *testBackend
	srv    *openvpn.Server
	served *enginetest.Served
	rec    *recorder // with -capture-seeds
}

func newInterop(t *testing.T, cfg openvpn.Config) *interop {
	return newInteropTLS(t, cfg, nil)
}

// newInteropTLS lets the test adjust the server's TLS configuration (CRL checks).
func newInteropTLS(t *testing.T, cfg openvpn.Config, tweak func(*tls.Config)) *interop {
	t.Helper()
	e := &interop{t: t, lab: enginetest.NewLab(t, "openvpn", "ping"), pki: newTestPKI(t), be: newTestBackend()}
	e.pki.writeFiles(t, e.lab.Dir)
	cfg.TLS = e.pki.serverTLS()
	if tweak != nil {
		tweak(cfg.TLS)
	}
	var err error
	e.srv, err = openvpn.NewServer(cfg, e.be)
	if err != nil {
		t.Fatal(err)
	}
	if *captureSeeds {
		e.rec = &recorder{}
		tlsCrypt := cfg.TLSCrypt != nil
		t.Cleanup(func() {
			if !t.Failed() {
				e.saveSeeds(e.rec, tlsCrypt)
			}
		})
	}
	e.served = enginetest.Serve(t, e.srv.Close, openvpn.ErrClosed, 10*time.Second)
	return e
}

// serve serves the client's transport, "tcp" or "udp".
func (e *interop) serve(proto string) {
	e.t.Helper()
	if proto == "udp" {
		e.serveUDP()
	} else {
		e.serveTCP()
	}
}

func (e *interop) serveTCP() {
	e.t.Helper()
	e.served.ListenStream(e.lab.Server, fmt.Sprintf("%s:%d", enginetest.ServerIP, labPort), func(ctx context.Context, c net.Conn) error {
		if e.rec != nil {
			c = &recConn{Conn: c, r: e.rec}
		}
		err := e.srv.ServeConn(ctx, c)
		e.t.Logf("ServeConn: %v", err)
		return err
	})
}

func (e *interop) serveUDP() {
	e.t.Helper()
	e.served.ListenPackets(e.lab.Server, fmt.Sprintf("%s:%d", enginetest.ServerIP, labPort), func(ctx context.Context, pc net.PacketConn) error {
		if e.rec != nil {
			pc = &recPacketConn{PacketConn: pc, r: e.rec}
		}
		return e.srv.ServeUDP(ctx, pc)
	})
}

// client is a running stock openvpn client.
type client struct {
	*ovpnclient.Client
	e *interop
}

// startClient starts openvpn in the client namespace with conf, whose files are in the lab's directory. user
// and otp answer an auth-user-pass prompt with a static challenge through the management interface.
func (e *interop) startClient(conf, user, otp string) *client {
	e.t.Helper()
	opts := ovpnclient.Options{Config: conf, Dir: e.lab.Dir, User: user, KeepTrying: true}
	if otp != "" {
		opts.OTP = func() string { return otp }
	}
	return &client{Client: ovpnclient.Start(e.t, e.lab.Client, opts), e: e}
}

// waitOutput waits up to d for the client to print substr.
func (c *client) waitOutput(substr string, d time.Duration) {
	c.e.t.Helper()
	if err := c.WaitLog(lab.Within(c.e.t, d), substr); err != nil {
		c.e.t.Fatal(err)
	}
}

// waitConnected waits for the client to finish connecting and returns how long it took by its own log.
func (c *client) waitConnected() time.Duration {
	c.e.t.Helper()
	c.waitOutput(ovpnclient.Connected, 15*time.Second)
	// The stock client takes every option the server pushes: one it refuses is a line the user reads as a fault.
	if out := c.Proc.Output(); strings.Contains(out, "Options error") {
		c.e.t.Fatalf("the client refused a pushed option:\n%s", out)
	}
	return c.ConnectTime()
}

func (c *client) ping(count int) {
	c.e.t.Helper()
	if err := c.e.lab.Client.Ping("10.8.0.1", count); err != nil {
		c.e.t.Fatalf("ping through the tunnel: %v", err)
	}
}

// clientConf is the common part of the client configurations.
func clientConf(proto string, extra ...string) string {
	lines := []string{
		"client", "dev tun", "proto " + proto, fmt.Sprintf("remote %s %d", enginetest.ServerIP, labPort),
		"nobind", "persist-key", "persist-tun", "ca ca.crt", "cert client.crt", "key client.key",
		"remote-cert-tls server", "disable-dco", "verb 4", "connect-retry 1", "script-security 1",
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

// expectRequest checks what the engine reported to Connect.
func expectRequest(t *testing.T, req *openvpn.ConnectRequest, tr openvpn.Transport, cipher, kd string) {
	t.Helper()
	if req == nil {
		t.Fatal("Connect was never called")
	}
	if req.Transport != tr || req.Cipher != cipher || req.KeyDerivation != kd {
		t.Errorf("negotiated %s/%s over %s, want %s/%s over %s", req.Cipher, req.KeyDerivation, req.Transport, cipher, kd, tr)
	}
	if len(req.PeerCertificates) == 0 || req.PeerCertificates[0].Subject.CommonName != "alice" {
		t.Errorf("peer certificates %v, want alice's", req.PeerCertificates)
	}
	if !strings.HasPrefix(req.PeerInfo.Version, "2.6") || req.PeerInfo.Platform != "linux" {
		t.Errorf("peer info %+v, want IV_VER 2.6.x on linux", req.PeerInfo)
	}
}

// The seed's .ovpn template verbatim (TCP, AES-128-CBC with the default SHA1 HMAC, static challenge
// "pin otp"), answered through the management interface.
func TestInteropTCPSeedProfile(t *testing.T) {
	e := newInterop(t, openvpn.Config{DataCiphers: []string{"AES-256-GCM", "AES-128-GCM", "AES-128-CBC"}})
	e.be.set("", "123456")
	e.serveTCP()
	c := e.startClient(clientConf("tcp", "resolv-retry infinite", "auth-user-pass",
		`static-challenge "pin otp" 1`, "cipher AES-128-CBC", "ncp-ciphers AES-128-CBC"), "alice", "123456")
	t.Logf("stock client connected in %v (TCP, seed profile, static challenge via management)", c.waitConnected())
	c.ping(3)
	req := e.be.lastRequest()
	expectRequest(t, req, openvpn.TCP, "AES-128-CBC", "tls-ekm")
	if req.Username != "alice" || req.Auth != "SHA1" {
		t.Errorf("username %q auth %q, want alice and SHA1", req.Username, req.Auth)
	}
	if pw, otp, err := openvpn.ParseStaticChallenge(req.Password); err != nil || pw != "" || otp != "123456" {
		t.Errorf("static challenge %q: (%q, %q, %v), want empty password and 123456", req.Password, pw, otp, err)
	}
}

func TestInteropUDPAES256GCM(t *testing.T) {
	e := newInterop(t, openvpn.Config{})
	e.serveUDP()
	c := e.startClient(clientConf("udp", "data-ciphers AES-256-GCM"), "", "")
	t.Logf("stock client connected in %v (UDP, AES-256-GCM, TLS 1.3)", c.waitConnected())
	c.ping(3)
	expectRequest(t, e.be.lastRequest(), openvpn.UDP, "AES-256-GCM", "tls-ekm")
}

// A 2.6 client with no cipher options offers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305; NCP picks AES-256-GCM
// even when the server lists it last.
func TestInteropDefaultClientNegotiatesAES256GCM(t *testing.T) {
	e := newInterop(t, openvpn.Config{DataCiphers: []string{"AES-128-GCM", "CHACHA20-POLY1305", "AES-256-GCM"}})
	e.serveTCP()
	c := e.startClient(clientConf("tcp"), "", "")
	t.Logf("connected in %v", c.waitConnected())
	c.ping(2)
	expectRequest(t, e.be.lastRequest(), openvpn.TCP, "AES-256-GCM", "tls-ekm")
	c.waitOutput("Data Channel: cipher 'AES-256-GCM'", 5*time.Second)
}

func TestInteropChaCha20Poly1305(t *testing.T) {
	e := newInterop(t, openvpn.Config{DataCiphers: []string{"CHACHA20-POLY1305"}})
	e.serveUDP()
	c := e.startClient(clientConf("udp"), "", "")
	c.waitConnected()
	c.ping(3)
	expectRequest(t, e.be.lastRequest(), openvpn.UDP, "CHACHA20-POLY1305", "tls-ekm")
}

// The legacy PRF key derivation, as used with clients that cannot export TLS keying material.
func TestInteropLegacyPRF(t *testing.T) {
	for _, cipher := range []string{"AES-256-GCM", "AES-256-CBC"} {
		t.Run(cipher, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{DataCiphers: []string{cipher}, Auth: "SHA256", DisableKeyExport: true})
			e.serveUDP()
			c := e.startClient(clientConf("udp", "data-ciphers "+cipher, "auth SHA256"), "", "")
			c.waitConnected()
			c.ping(3)
			expectRequest(t, e.be.lastRequest(), openvpn.UDP, cipher, "prf")
		})
	}
}

func TestInteropTLSCrypt(t *testing.T) {
	key := fixedTLSCryptKey(t)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{TLSCrypt: key})
			if err := os.WriteFile(filepath.Join(e.lab.Dir, "tc.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
			e.serve(proto)
			c := e.startClient(clientConf(proto, "tls-crypt tc.key"), "", "")
			c.waitConnected()
			c.ping(3)
		})
	}
}

// A client holding the wrong tls-crypt key gets no answer at all.
func TestInteropTLSCryptWrongKey(t *testing.T) {
	e := newInterop(t, openvpn.Config{TLSCrypt: fixedTLSCryptKey(t), HandshakeTimeout: 3 * time.Second})
	other := make([]byte, 256)
	for i := range other {
		other[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(e.lab.Dir, "bad.key"), tlsCryptKeyFile(other), 0o600); err != nil {
		t.Fatal(err)
	}
	e.serveUDP()
	c := e.startClient(clientConf("udp", "tls-crypt bad.key", "hand-window 3"), "", "")
	// Two malformed packets: the client retried because nothing came back, and the server had that long to answer
	// the first one, had it wanted to.
	if err := lab.WaitFor(lab.Within(t, 15*time.Second), 50*time.Millisecond, func() error {
		if st := e.srv.Stats(); st.Malformed < 2 {
			return fmt.Errorf("stats %+v: want the client's packets counted as malformed", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.Proc.Output(), "Initial packet from") {
		t.Fatalf("the server answered a client with the wrong tls-crypt key:\n%s", c.Proc.Output())
	}
	if st := e.srv.Stats(); st.Handshakes != 0 {
		t.Errorf("stats %+v: want no handshake", st)
	}
}

func TestInteropTLS12(t *testing.T) {
	e := newInterop(t, openvpn.Config{})
	e.serveTCP()
	c := e.startClient(clientConf("tcp", "tls-version-max 1.2"), "", "")
	c.waitConnected()
	c.ping(3)
	req := e.be.lastRequest()
	expectRequest(t, req, openvpn.TCP, "AES-256-GCM", "tls-ekm")
	if req.TLSVersion != 0x0303 {
		t.Errorf("TLS version %#x, want 1.2", req.TLSVersion)
	}
	c.waitOutput("Control Channel: TLSv1.2", time.Second)
}

func TestInteropAuthFailedReason(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{DataCiphers: []string{"AES-128-CBC", "AES-256-GCM"}})
			e.be.set("", "654321")
			e.serve(proto)
			c := e.startClient(clientConf(proto, "auth-user-pass", `static-challenge "pin otp" 1`,
				"auth-retry none"), "alice", "000000")
			c.waitOutput("AUTH: Received control message: AUTH_FAILED,wrong one-time password", 10*time.Second)
			if err := c.Proc.WaitExit(lab.Within(t, 5*time.Second)); err != nil {
				t.Fatalf("client still running after AUTH_FAILED: %v", err)
			}
			expectError(t, e.be.failed, openvpn.ErrAuthFailed, "HandshakeFailed", 5*time.Second)
		})
	}
}

// The core cuts a live session (revoked certificate, admin disconnect): the client is told to halt and logs why.
func TestInteropServerCutsSession(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{})
			e.serve(proto)
			c := e.startClient(clientConf(proto), "", "")
			c.waitConnected()
			c.ping(1)
			s := <-e.be.connected
			s.Close("certificate revoked")
			c.waitOutput("Halt command was pushed by server ('certificate revoked')", 5*time.Second)
			expectError(t, e.be.disconnected, openvpn.ErrKilled, "Disconnected", 5*time.Second)
			if err := c.Proc.WaitExit(lab.Within(t, 5*time.Second)); err != nil {
				t.Fatalf("client still running after HALT: %v", err)
			}
			if s.SendPacket(make([]byte, 60)) {
				t.Error("SendPacket succeeded on a closed session")
			}
		})
	}
}

// The client renegotiates every 2 seconds (and the server every 3) while a ping runs: no reply may be lost.
func TestInteropRenegotiation(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{RenegotiateAfter: 3 * time.Second, LameDuck: 5 * time.Second})
			e.serve(proto)
			c := e.startClient(clientConf(proto, "reneg-sec 2"), "", "")
			c.waitConnected()
			s := <-e.be.connected
			if out, err := e.lab.Client.Run("ping", "-n", "-q", "-c", "35", "-i", "0.2", "-W", "1", "10.8.0.1"); err != nil {
				t.Fatalf("ping during renegotiations: %v\n%s\n---- client ----\n%s", err, out, c.Proc.Output())
			}
			st := s.Stats()
			if st.Renegotiations < 2 {
				t.Errorf("%d renegotiations in 7s, want at least 2\n%s", st.Renegotiations, c.Proc.Output())
			}
			if st.DecryptErrors != 0 {
				t.Errorf("%d decrypt errors", st.DecryptErrors)
			}
			t.Logf("stats: %+v", st)
		})
	}
}

// explicit-exit-notify: the client says goodbye and the server drops the session at once.
func TestInteropExplicitExitNotify(t *testing.T) {
	e := newInterop(t, openvpn.Config{})
	e.serveUDP()
	c := e.startClient(clientConf("udp", "explicit-exit-notify 1"), "", "")
	c.waitConnected()
	c.Proc.Stop()
	expectError(t, e.be.disconnected, openvpn.ErrClientExit, "Disconnected", 5*time.Second)
}

// On shutdown the server tells its clients to reconnect (RESTART).
func TestInteropServerShutdownNotifies(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{})
			e.serve(proto)
			c := e.startClient(clientConf(proto), "", "")
			c.waitConnected()
			start := time.Now()
			e.srv.Close()
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Close took %v", d)
			}
			c.waitOutput("Connection reset command was pushed by server", 5*time.Second)
			expectError(t, e.be.disconnected, openvpn.ErrShutdown, "Disconnected", 5*time.Second)
		})
	}
}

// A client configured with compression is refused with a reason it logs, instead of failing on data.
func TestInteropCompressionRefused(t *testing.T) {
	e := newInterop(t, openvpn.Config{})
	e.serveUDP()
	c := e.startClient(clientConf("udp", "compress lz4-v2", "auth-retry none"), "", "")
	c.waitOutput("AUTH_FAILED,compression (comp-lzo/compress) is not supported", 10*time.Second)
}

// Certificates refused by TLS: the client logs the TLS alert, the server reports ErrTLS, and nothing reaches
// Connect.
func TestInteropCertificateRefused(t *testing.T) {
	for _, tc := range []struct {
		name, proto string
		serial      int64
		notAfter    time.Time
	}{
		{"expired/udp", "udp", 10, time.Now().Add(-time.Hour)},
		{"revoked/tcp", "tcp", 66, time.Time{}},
		{"revoked/udp", "udp", 66, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The CRL check as the core does it: VerifyPeerCertificate refuses revoked serials.
			e := newInteropTLS(t, openvpn.Config{}, func(c *tls.Config) {
				c.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
					if chains[0][0].SerialNumber.Int64() == 66 {
						return errors.New("certificate revoked")
					}
					return nil
				}
			})
			_, certPEM, keyPEM := e.pki.Issue(t, enginetest.Leaf{Serial: tc.serial, CommonName: "mallory",
				Usage: x509.ExtKeyUsageClientAuth, Hosts: []string{"mallory"}, NotAfter: tc.notAfter})
			enginetest.WriteFiles(t, e.lab.Dir, map[string][]byte{"bad.crt": certPEM, "bad.key": keyPEM})
			if tc.proto == "udp" {
				e.serveUDP()
			} else {
				e.serveTCP()
			}
			conf := strings.Replace(strings.Replace(clientConf(tc.proto), "cert client.crt", "cert bad.crt", 1), "key client.key", "key bad.key", 1)
			c := e.startClient(conf, "", "")
			c.waitOutput("alert", 10*time.Second)
			expectError(t, e.be.failed, openvpn.ErrTLS, "HandshakeFailed", 5*time.Second)
			if e.be.lastRequest() != nil {
				t.Error("Connect called for a refused certificate")
			}
			for _, line := range strings.Split(c.Proc.Output(), "\n") {
				if strings.Contains(line, "alert") {
					t.Logf("client: %s", line)
				}
			}
		})
	}
}

// A flood of hard resets from thousands of source ports of the client's host, the way a spoofer fills a server's
// handshake table, while the stock client connects over UDP: it gets in at once, and the flood leaves no state.
func TestInteropUDPDuringResetFlood(t *testing.T) {
	const ports = 2000
	e := newInterop(t, openvpn.Config{})
	e.serveUDP()
	var socks []net.Conn
	if err := e.lab.Client.Do(func() error {
		for range ports {
			c, err := net.Dial("udp4", net.JoinHostPort(enginetest.ServerIP, fmt.Sprint(labPort)))
			if err != nil {
				return err
			}
			socks = append(socks, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range socks {
			c.Close()
		}
	})
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		sent := 0
		defer func() { flooded <- sent }()
		for round := 0; ; round++ {
			for i, c := range socks {
				select {
				case <-stop:
					return
				default:
				}
				p := wire.ControlPacket{Opcode: wire.ControlHardResetClientV2, SessionID: wire.SessionID{0xf1, byte(round), byte(i >> 8), byte(i)}}
				if _, err := c.Write(p.Append(nil)); err == nil {
					sent++
				}
				if i%100 == 99 {
					time.Sleep(time.Millisecond)
				}
			}
		}
	}()
	// The table is full by now on a server that keeps state for resets.
	time.Sleep(500 * time.Millisecond)
	c := e.startClient(clientConf("udp"), "", "")
	t.Logf("stock client connected in %v during the flood", c.waitConnected())
	close(stop)
	sent := <-flooded
	c.ping(3)
	st := e.srv.Stats()
	t.Logf("%d resets sent; stats %+v", sent, st)
	if st.Handshakes != 1 || st.PendingHandshakes != 0 || st.ResetAnswers < ports {
		t.Errorf("stats %+v: want one handshake (the real client's) and the flood answered statelessly", st)
	}
}
