package openvpn_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/sslvpn/openvpn"
	"toride/sslvpn/openvpn/internal/wire"
	"toride/tests/lab"
)

const (
	labServerIP = "10.99.0.1"
	labClientIP = "10.99.0.2"
	labPort     = 1194
)

// interop is one real-client test: a server namespace running the engine in this process, a client namespace
// running the stock openvpn binary.
type interop struct {
	t     *testing.T
	lab   *lab.Lab
	srvNS *lab.Netns
	cliNS *lab.Netns
	dir   string
	pki   *testPKI
	be    *testBackend
	srv   *openvpn.Server
	wg    sync.WaitGroup
	rec   *recorder // with -capture-seeds
}

func newInterop(t *testing.T, cfg openvpn.Config) *interop {
	return newInteropTLS(t, cfg, nil)
}

// newInteropTLS lets the test adjust the server's TLS configuration (CRL checks).
func newInteropTLS(t *testing.T, cfg openvpn.Config, tweak func(*tls.Config)) *interop {
	t.Helper()
	l := lab.New(t, "openvpn", "ping")
	e := &interop{t: t, lab: l, pki: newTestPKI(t), be: newTestBackend()}
	e.srvNS = l.Namespace("srv")
	e.cliNS = l.Namespace("cli")
	l.Link(e.srvNS, "eth0", labServerIP+"/24", e.cliNS, "eth0", labClientIP+"/24")
	// A short directory: the management socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "ovpn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.dir = dir
	e.pki.writeFiles(t, dir)
	cfg.TLS = e.pki.serverTLS()
	if tweak != nil {
		tweak(cfg.TLS)
	}
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
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { e.srv.Close(); e.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not shut down within 10s")
		}
	})
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
	var ln net.Listener
	if err := e.srvNS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", labServerIP, labPort))
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(func() { cancel(); ln.Close() })
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if e.rec != nil {
				c = &recConn{Conn: c, r: e.rec}
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				err := e.srv.ServeConn(ctx, c)
				e.t.Logf("ServeConn: %v", err)
			}()
		}
	}()
}

func (e *interop) serveUDP() {
	e.t.Helper()
	var pc net.PacketConn
	if err := e.srvNS.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", labServerIP, labPort))
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := pc
	if e.rec != nil {
		served = &recPacketConn{PacketConn: pc, r: e.rec}
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.srv.ServeUDP(ctx, served); err != nil {
			e.t.Errorf("ServeUDP: %v", err)
		}
		pc.Close()
	}()
	e.t.Cleanup(cancel)
}

// client is a running stock openvpn client.
type client struct {
	p    *lab.Process
	e    *interop
	mgmt net.Conn
}

// startClient writes conf (plus management lines) and starts openvpn in the client namespace. user and otp
// answer an auth-user-pass prompt with a static challenge through the management interface.
func (e *interop) startClient(name, conf, user, otp string) *client {
	e.t.Helper()
	sock := filepath.Join(e.dir, name+".sock")
	conf += fmt.Sprintf("\nmanagement %s unix\nmanagement-hold\nmanagement-query-passwords\n", sock)
	path := filepath.Join(e.dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		e.t.Fatal(err)
	}
	c := &client{e: e}
	c.p = e.cliNS.Start("openvpn", "--cd", e.dir, "--config", path)
	ctx := lab.Within(e.t, 10*time.Second)
	if err := lab.WaitFor(ctx, 20*time.Millisecond, func() error {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			if exited, werr := c.p.Exited(); exited {
				return lab.Permanent(fmt.Errorf("openvpn exited: %v\n%s", werr, c.p.Output()))
			}
			return err
		}
		c.mgmt = conn
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.mgmt.Close() })
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		c.manage(user, otp)
	}()
	return c
}

// manage answers the management interface until it closes.
func (c *client) manage(user, otp string) {
	sc := bufio.NewScanner(c.mgmt)
	send := func(s string) { fmt.Fprintf(c.mgmt, "%s\n", s) }
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ">HOLD:"):
			send("hold release")
		case strings.HasPrefix(line, ">PASSWORD:Need 'Auth'"):
			send(fmt.Sprintf("username \"Auth\" %q", user))
			send(fmt.Sprintf("password \"Auth\" %q", openvpn.FormatStaticChallenge("", otp)))
		}
	}
}

func (c *client) waitOutput(substr string, d time.Duration) {
	c.e.t.Helper()
	if err := c.p.WaitOutput(lab.Within(c.e.t, d), substr); err != nil {
		c.e.t.Fatalf("%v\n---- client output ----\n%s", err, c.p.Output())
	}
}

// waitConnected waits for the client to finish connecting and returns how long it took by the client's own
// log: from the management interface's hold release (the client starts) to "Initialization Sequence
// Completed".
func (c *client) waitConnected() time.Duration {
	c.e.t.Helper()
	c.waitOutput("Initialization Sequence Completed", 15*time.Second)
	start, end := logTime(c.p.Output(), "CMD 'hold release'"), logTime(c.p.Output(), "Initialization Sequence Completed")
	return end.Sub(start)
}

// logTime finds the first openvpn log line containing substr and returns its timestamp
// ("2026-11-23 19:31:30 us=912220 ...").
func logTime(out, substr string) time.Time {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, substr) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			break
		}
		ts, err := time.Parse("2006-01-02 15:04:05", f[0]+" "+f[1])
		var us int
		if _, err2 := fmt.Sscanf(f[2], "us=%d", &us); err != nil || err2 != nil {
			break
		}
		return ts.Add(time.Duration(us) * time.Microsecond)
	}
	return time.Time{}
}

func (c *client) ping(count int) {
	c.e.t.Helper()
	if err := c.e.cliNS.Ping("10.8.0.1", count); err != nil {
		c.e.t.Fatalf("ping through the tunnel: %v\n---- client output ----\n%s", err, c.p.Output())
	}
}

// clientConf is the common part of the client configurations.
func clientConf(proto string, extra ...string) string {
	lines := []string{
		"client", "dev tun", "proto " + proto, fmt.Sprintf("remote %s %d", labServerIP, labPort),
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
	c := e.startClient("seed", clientConf("tcp", "resolv-retry infinite", "auth-user-pass",
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
	c := e.startClient("gcm", clientConf("udp", "data-ciphers AES-256-GCM"), "", "")
	t.Logf("stock client connected in %v (UDP, AES-256-GCM, TLS 1.3)", c.waitConnected())
	c.ping(3)
	expectRequest(t, e.be.lastRequest(), openvpn.UDP, "AES-256-GCM", "tls-ekm")
}

// A 2.6 client with no cipher options offers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305; NCP picks AES-256-GCM
// even when the server lists it last.
func TestInteropDefaultClientNegotiatesAES256GCM(t *testing.T) {
	e := newInterop(t, openvpn.Config{DataCiphers: []string{"AES-128-GCM", "CHACHA20-POLY1305", "AES-256-GCM"}})
	e.serveTCP()
	c := e.startClient("default", clientConf("tcp"), "", "")
	t.Logf("connected in %v", c.waitConnected())
	c.ping(2)
	expectRequest(t, e.be.lastRequest(), openvpn.TCP, "AES-256-GCM", "tls-ekm")
	c.waitOutput("Data Channel: cipher 'AES-256-GCM'", 5*time.Second)
}

func TestInteropChaCha20Poly1305(t *testing.T) {
	e := newInterop(t, openvpn.Config{DataCiphers: []string{"CHACHA20-POLY1305"}})
	e.serveUDP()
	c := e.startClient("chacha", clientConf("udp"), "", "")
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
			c := e.startClient("prf", clientConf("udp", "data-ciphers "+cipher, "auth SHA256"), "", "")
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
			if err := os.WriteFile(filepath.Join(e.dir, "tc.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
			e.serve(proto)
			c := e.startClient("tc", clientConf(proto, "tls-crypt tc.key"), "", "")
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
	if err := os.WriteFile(filepath.Join(e.dir, "bad.key"), tlsCryptKeyFile(other), 0o600); err != nil {
		t.Fatal(err)
	}
	e.serveUDP()
	c := e.startClient("badtc", clientConf("udp", "tls-crypt bad.key", "hand-window 3"), "", "")
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
	if strings.Contains(c.p.Output(), "Initial packet from") {
		t.Fatalf("the server answered a client with the wrong tls-crypt key:\n%s", c.p.Output())
	}
	if st := e.srv.Stats(); st.Handshakes != 0 {
		t.Errorf("stats %+v: want no handshake", st)
	}
}

func TestInteropTLS12(t *testing.T) {
	e := newInterop(t, openvpn.Config{})
	e.serveTCP()
	c := e.startClient("tls12", clientConf("tcp", "tls-version-max 1.2"), "", "")
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
			c := e.startClient("authfail", clientConf(proto, "auth-user-pass", `static-challenge "pin otp" 1`,
				"auth-retry none"), "alice", "000000")
			c.waitOutput("AUTH: Received control message: AUTH_FAILED,wrong one-time password", 10*time.Second)
			select {
			case <-c.p.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("client still running after AUTH_FAILED:\n%s", c.p.Output())
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
			c := e.startClient("cut", clientConf(proto), "", "")
			c.waitConnected()
			c.ping(1)
			s := <-e.be.connected
			s.Close("certificate revoked")
			c.waitOutput("Halt command was pushed by server ('certificate revoked')", 5*time.Second)
			expectError(t, e.be.disconnected, openvpn.ErrKilled, "Disconnected", 5*time.Second)
			select {
			case <-c.p.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("client still running after HALT:\n%s", c.p.Output())
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
			c := e.startClient("reneg", clientConf(proto, "reneg-sec 2"), "", "")
			c.waitConnected()
			s := <-e.be.connected
			if out, err := e.cliNS.Run("ping", "-n", "-q", "-c", "35", "-i", "0.2", "-W", "1", "10.8.0.1"); err != nil {
				t.Fatalf("ping during renegotiations: %v\n%s\n---- client ----\n%s", err, out, c.p.Output())
			}
			st := s.Stats()
			if st.Renegotiations < 2 {
				t.Errorf("%d renegotiations in 7s, want at least 2\n%s", st.Renegotiations, c.p.Output())
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
	c := e.startClient("exit", clientConf("udp", "explicit-exit-notify 1"), "", "")
	c.waitConnected()
	c.p.Stop()
	expectError(t, e.be.disconnected, openvpn.ErrClientExit, "Disconnected", 5*time.Second)
}

// On shutdown the server tells its clients to reconnect (RESTART).
func TestInteropServerShutdownNotifies(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			e := newInterop(t, openvpn.Config{})
			e.serve(proto)
			c := e.startClient("restart", clientConf(proto), "", "")
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
	c := e.startClient("comp", clientConf("udp", "compress lz4-v2", "auth-retry none"), "", "")
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
			certPEM, keyPEM := e.pki.issue(tc.serial, "mallory", tc.notAfter)
			os.WriteFile(filepath.Join(e.dir, "bad.crt"), certPEM, 0o600)
			os.WriteFile(filepath.Join(e.dir, "bad.key"), keyPEM, 0o600)
			if tc.proto == "udp" {
				e.serveUDP()
			} else {
				e.serveTCP()
			}
			conf := strings.Replace(strings.Replace(clientConf(tc.proto), "cert client.crt", "cert bad.crt", 1), "key client.key", "key bad.key", 1)
			c := e.startClient("refused", conf, "", "")
			c.waitOutput("alert", 10*time.Second)
			expectError(t, e.be.failed, openvpn.ErrTLS, "HandshakeFailed", 5*time.Second)
			if e.be.lastRequest() != nil {
				t.Error("Connect called for a refused certificate")
			}
			for _, line := range strings.Split(c.p.Output(), "\n") {
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
	if err := e.cliNS.Do(func() error {
		for range ports {
			c, err := net.Dial("udp4", net.JoinHostPort(labServerIP, fmt.Sprint(labPort)))
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
	c := e.startClient("flood", clientConf("udp"), "", "")
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
