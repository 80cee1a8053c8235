package tests

import (
	"context"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"toride/appliance/api"
	"toride/appliance/config"
	"toride/sslvpn/pki"
	"toride/tests/lab"
	"toride/tests/ovpnclient"
	"toride/tests/toridetest"
)

// vpnLab is an appliance with an SSL-VPN made through the cloud-style REST API, a client namespace on its outside
// and a LAN host behind it:
//
//	client 192.0.2.2 ── eth0 192.0.2.1 [box: torided] eth1 10.50.0.1 ── lan 10.50.0.2
type vpnLab struct {
	t      testing.TB
	l      *lab.Lab
	box    *toridetest.Daemon
	client *lab.Netns
	lan    *lab.Netns
	connID string
}

// newVPNLab makes the lab. daemonFlags are torided's extra flags (see toridetest.Start).
func newVPNLab(t testing.TB, otpOn bool, daemonFlags ...string) *vpnLab {
	l := lab.New(t, "openvpn", "ping", "unshare")
	v := &vpnLab{t: t, l: l}
	boxNS := l.Namespace("box")
	v.client = l.Namespace("cli")
	v.lan = l.Namespace("lan")
	l.Link(boxNS, "eth0", "", v.client, "eth0", "192.0.2.2/24")
	l.Link(boxNS, "eth1", "", v.lan, "eth0", "10.50.0.2/24")
	v.lan.AddRoute("default", "10.50.0.1")
	v.box = toridetest.Start(t, boxNS, t.TempDir(), daemonFlags...)
	v.commands("set system interfaces eth0 address 192.0.2.1/24", "set system interfaces eth1 address 10.50.0.1/24")
	v.commit()
	v.createVPN("192.0.2.1", otpOn)
	return v
}

// createVPN makes the VPN service (clients dial external) and its SSL-VPN connection through the REST API, as
// a cloud console does, and checks the connection is active.
func (v *vpnLab) createVPN(external string, otpOn bool) {
	v.t.Helper()
	var svc struct {
		VPNService struct{ ID string } `json:"vpnservice"`
	}
	v.rest("POST", "/vpn/nfv/vpnservices", map[string]any{"vpnservice": map[string]any{
		"name": "office", "local_networks": []string{"10.50.0.0/24"}, "external_address": external}}, &svc, http.StatusCreated)
	var conn struct {
		Conn connJSON `json:"ssl-vpn-v3-connection"`
	}
	v.rest("POST", "/vpn/nfv/ssl-vpn-v3-connections", map[string]any{"ssl-vpn-v3-connection": map[string]any{
		"name": "main", "client_address_pool_cidr": "10.8.0.0/24", "vpnservice_id": svc.VPNService.ID, "otp": otpOn, "flavor": "small"}}, &conn, http.StatusCreated)
	if conn.Conn.ID == "" || conn.Conn.ExternalAddress != external || conn.Conn.Status != "ACTIVE" {
		v.t.Fatalf("created connection %+v", conn.Conn)
	}
	v.connID = conn.Conn.ID
}

type connJSON struct {
	ID              string `json:"id"`
	ExternalAddress string `json:"external_address"`
	Status          string `json:"status"`
}

func (v *vpnLab) commands(lines ...string) {
	v.t.Helper()
	if err := v.box.API.Do(context.Background(), "POST", "/api/v1/config/commands", map[string]any{"commands": lines}, nil); err != nil {
		v.t.Fatal(err)
	}
}

func (v *vpnLab) commit() {
	v.t.Helper()
	if err := v.box.API.Do(context.Background(), "POST", "/api/v1/config/commit", map[string]any{}, nil); err != nil {
		v.t.Fatal(err)
	}
}

// rest calls the API and checks the status; want 0 means any 2xx.
func (v *vpnLab) rest(method, path string, body, out any, want int) *api.Error {
	v.t.Helper()
	err := v.box.API.Do(context.Background(), method, path, body, out)
	if ae, ok := err.(*api.Error); ok {
		if ae.Status == want {
			return ae
		}
		v.t.Fatalf("%s %s: %d %s: %s", method, path, ae.Status, ae.Code, ae.Message)
	}
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	return nil
}

func (v *vpnLab) conn(suffix string) string {
	return "/vpn/nfv/ssl-vpn-v3-connections/" + v.connID + suffix
}

// enroll issues user an OTP key and returns it (base32).
func (v *vpnLab) enroll(user string) string {
	v.t.Helper()
	var out struct {
		C struct{ UserID, Secret, OTPAuthURI string } `json:"ssl-vpn-v3-connection"`
	}
	v.rest("POST", v.conn("/otp"), map[string]any{"ssl-vpn-v3-connection": map[string]any{"user_id": user}}, &out, 0)
	if out.C.Secret == "" {
		v.t.Fatalf("no secret for %s: %+v", user, out)
	}
	return out.C.Secret
}

// profile issues user a certificate and downloads their .ovpn.
func (v *vpnLab) profile(user, query string) string {
	v.t.Helper()
	v.rest("POST", v.conn("/users/"+user+"/certificate"), nil, nil, 0)
	var raw []byte
	if err := v.box.API.Do(context.Background(), "GET", v.conn("/client-config?user_id="+user+query), nil, &raw); err != nil {
		v.t.Fatal(err)
	}
	return string(raw)
}

// code returns the TOTP code of secret for the current time step plus skew steps.
func code(t *testing.T, secret string, skew int) string {
	t.Helper()
	step := uint64(time.Now().Unix()/30) + uint64(skew)
	c, err := hotp.GenerateCodeCustom(secret, step, hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fixed(c string) func() string { return func() string { return c } }

// connect starts a client and waits for its tunnel.
func (v *vpnLab) connect(user, profile string, otpFn func() string) *ovpnclient.Client {
	v.t.Helper()
	c := ovpnclient.Start(v.t, v.client, ovpnclient.Options{Config: profile, User: user, OTP: otpFn})
	if err := c.WaitConnected(lab.Within(v.t, 20*time.Second)); err != nil {
		v.t.Fatalf("%s did not connect: %v\nserver log:\n%s", user, err, v.box.Proc.Output())
	}
	return c
}

// refused starts a client that must be refused with reason in both logs.
func (v *vpnLab) refused(user, profile string, otpFn func() string, clientSays, serverSays string) {
	v.t.Helper()
	c := ovpnclient.Start(v.t, v.client, ovpnclient.Options{Config: profile, User: user, OTP: otpFn})
	defer c.Stop()
	if err := c.WaitLog(lab.Within(v.t, 20*time.Second), clientSays); err != nil {
		v.t.Fatalf("%s: the client never logged %q: %v", user, clientSays, err)
	}
	if err := v.box.Proc.WaitOutput(lab.Within(v.t, 5*time.Second), serverSays); err != nil {
		v.t.Fatalf("%s: the server never logged %q: %v", user, serverSays, err)
	}
}

func (v *vpnLab) pingLAN() {
	v.t.Helper()
	if err := v.client.Ping("10.50.0.2", 3); err != nil {
		v.t.Fatalf("ping through the tunnel to the LAN host: %v", err)
	}
}

// seedTemplate is the cloud guide's client template, with its typography repaired and the files inline.
func seedTemplate(t *testing.T, downloaded string) string {
	block := func(tag string) string {
		_, rest, _ := strings.Cut(downloaded, "<"+tag+">\n")
		body, _, _ := strings.Cut(rest, "</"+tag+">")
		if body == "" {
			t.Fatalf("the downloaded profile has no <%s>", tag)
		}
		return "<" + tag + ">\n" + body + "</" + tag + ">\n"
	}
	return `client
dev tun
proto tcp
remote 192.0.2.1 443
resolv-retry infinite
nobind
auth-user-pass
static-challenge "pin otp" 1
persist-key
persist-tun
remote-cert-tls server
cipher AES-128-CBC
ncp-ciphers AES-128-CBC
` + block("ca") + block("cert") + block("key")
}

// TestOpenVPNSeedProfileOverTCP: the cloud guide's own template (TCP 443, AES-128-CBC only, TOTP through the
// static challenge) reaches the LAN host; the server logs the cipher NCP chose.
func TestOpenVPNSeedProfileOverTCP(t *testing.T) {
	v := newVPNLab(t, true)
	secret := v.enroll("alice")
	c := v.connect("alice", seedTemplate(t, v.profile("alice", "")), fixed(code(t, secret, 0)))
	defer c.Stop()
	v.pingLAN()
	if err := c.WaitLog(lab.Within(t, time.Second), "Data Channel: cipher 'AES-128-CBC'"); err != nil {
		t.Fatal(err)
	}
	if err := v.box.Proc.WaitOutput(lab.Within(t, time.Second), "cipher=AES-128-CBC"); err != nil {
		t.Fatal(err)
	}
	var sessions struct {
		Sessions []struct{ User, Address, Cipher, Protocol string }
	}
	v.rest("GET", v.conn("/sessions"), nil, &sessions, 0)
	if len(sessions.Sessions) != 1 || sessions.Sessions[0].User != "alice" || sessions.Sessions[0].Protocol != "openvpn-tcp" {
		t.Fatalf("sessions %+v", sessions)
	}
	// The console sees the same.
	if out := v.box.MustToride("show", "sslvpn", "sessions"); !strings.Contains(out, "alice") || !strings.Contains(out, "AES-128-CBC") || !strings.Contains(out, "10.8.0.2") {
		t.Fatalf("show sslvpn sessions:\n%s", out)
	}
	if out := v.box.MustToride("show", "sslvpn"); !strings.Contains(out, "1/20") || !strings.Contains(out, "10.8.0.0/24") {
		t.Fatalf("show sslvpn:\n%s", out)
	}
	// And so does Prometheus: the session, its login, the traffic of the ping, the commits that made the server.
	requireMetrics(t, v.box,
		`^toride_sslvpn_sessions\{protocol="openvpn-tcp",server="main"\} 1$`,
		`^toride_sslvpn_sessions\{protocol="openvpn-udp",server="main"\} 0$`,
		`^toride_sslvpn_logins_total 1$`,
		`^toride_sslvpn_login_failures_total\{reason="wrong_code"\} 0$`,
		`^toride_sslvpn_session_bytes\{direction="in",protocol="openvpn-tcp",server="main"\} [1-9]`,
		`^toride_sslvpn_packets_total\{direction="from_clients",server="main"\} [1-9]`,
		`^toride_commits_total [1-9]`,
		`^toride_build_info\{`)
}

// TestOpenVPNDownloadedProfileOverUDP: the profile the appliance hands out, over UDP, negotiates AES-256-GCM with
// a stock 2.6 client; the OTP-less server needs no challenge.
func TestOpenVPNDownloadedProfileOverUDP(t *testing.T) {
	v := newVPNLab(t, false)
	profile := v.profile("bob", "&proto=udp")
	if !strings.Contains(profile, "proto udp") || !strings.Contains(profile, "remote 192.0.2.1 1194") || strings.Contains(profile, "static-challenge") {
		t.Fatalf("UDP profile:\n%s", profile)
	}
	c := ovpnclient.Start(t, v.client, ovpnclient.Options{Config: profile, User: "bob"})
	defer c.Stop()
	if err := c.WaitConnected(lab.Within(t, 20*time.Second)); err != nil {
		t.Fatalf("bob did not connect: %v", err)
	}
	v.pingLAN()
	if err := c.WaitLog(lab.Within(t, time.Second), "Data Channel: cipher 'AES-256-GCM'"); err != nil {
		t.Fatal(err)
	}
}

// loginFailed is what the client of every failed login reads, whatever the reason: the reason is the server's.
const loginFailed = "AUTH_FAILED,login failed: wrong user name, password or one-time password"

// TestOpenVPNRefusals: every refusal reaches the client's log and the server's; a failed login says the same to
// the client whatever went wrong, and its reason to the server's log only.
func TestOpenVPNRefusals(t *testing.T) {
	v := newVPNLab(t, true)
	alice := v.enroll("alice")
	aliceProfile := v.profile("alice", "")

	// A wrong code.
	wrong := fmt.Sprintf("%06d", (atoi(code(t, alice, 0))+1)%1000000)
	v.refused("alice", aliceProfile, fixed(wrong), loginFailed, `why="wrong one-time password"`)

	// A replayed code: the next step's code is accepted once, then refused for the rest of its window.
	used := code(t, alice, 1)
	c := v.connect("alice", aliceProfile, fixed(used))
	c.Stop()
	v.refused("alice", aliceProfile, fixed(used), loginFailed, "already used")

	// A user who was never given a key.
	v.refused("mallory", v.profile("mallory", ""), fixed("123456"), loginFailed, `user=mallory`)

	// A profile without the static challenge.
	noChallenge := strings.Replace(aliceProfile, "static-challenge \"pin otp\" 1\n", "", 1)
	v.refused("alice", noChallenge, nil, "AUTH_FAILED,this server requires a one-time password", "requires a one-time password")

	// The session limit, lowered through the configuration shell's path.
	v.commands("set sslvpn servers main max-sessions 1")
	v.commit()
	carol, dave := v.enroll("carol"), v.enroll("dave")
	cc := v.connect("carol", v.profile("carol", ""), fixed(code(t, carol, 0)))
	defer cc.Stop()
	v.refused("dave", v.profile("dave", ""), fixed(code(t, dave, 0)), "AUTH_FAILED,connection limit reached: 1 sessions (max-sessions 1)", "reason=session_limit")
	var st struct {
		Servers []struct{ Refused map[string]int }
	}
	v.rest("GET", "/api/v1/sslvpn/status", nil, &st, 0)
	if st.Servers[0].Refused["session_limit"] != 1 || st.Servers[0].Refused["otp"] < 4 {
		t.Fatalf("refusals counted %+v", st.Servers[0].Refused)
	}
}

// TestOpenVPNCodeRefusedAfterRestart: a code accepted before torided restarts is refused after it, within the
// code's window.
func TestOpenVPNCodeRefusedAfterRestart(t *testing.T) {
	v := newVPNLab(t, true)
	alice := v.enroll("alice")
	profile := v.profile("alice", "")
	used := code(t, alice, 1) // valid for the next minute and a half
	c := v.connect("alice", profile, fixed(used))
	c.Stop()
	v.box.Proc.Stop()
	v.box = toridetest.Start(t, v.box.NS, v.box.StateDir)
	v.refused("alice", profile, fixed(used), loginFailed, "one-time password already used")
}

// TestOpenVPNPoolExhaustedAndAddressHold: with one address, a user who left keeps it for the hold time; another
// user is refused meanwhile, and the first gets the same address back.
func TestOpenVPNPoolExhaustedAndAddressHold(t *testing.T) {
	v := newVPNLab(t, false)
	v.commands("set sslvpn servers main pool 10.9.0.0/30", "set sslvpn servers main max-sessions 1")
	v.commit()
	erin := v.connect("erin", v.profile("erin", ""), nil)
	if err := erin.WaitLog(lab.Within(t, time.Second), "10.9.0.2"); err != nil {
		t.Fatal(err)
	}
	erin.Stop()
	if err := v.box.Proc.WaitOutput(lab.Within(t, 10*time.Second), "client disconnected"); err != nil {
		t.Fatal(err)
	}
	v.refused("frank", v.profile("frank", ""), nil, "AUTH_FAILED,no free client address", "reason=pool_exhausted")
	again := v.connect("erin", v.profile("erin", ""), nil)
	defer again.Stop()
	if err := again.WaitLog(lab.Within(t, time.Second), "10.9.0.2"); err != nil {
		t.Fatalf("erin came back to another address: %v", err)
	}
}

// TestOpenVPNRevocation: a certificate revoked through the API, and one revoked by a DER CRL of an external CA,
// lose their live sessions at once and cannot come back; an expired certificate is refused at the handshake.
func TestOpenVPNRevocation(t *testing.T) {
	v := newVPNLab(t, false)

	// The appliance's own CA: DELETE …/certificate.
	alice := v.connect("alice", v.profile("alice", ""), nil)
	v.pingLAN()
	v.rest("DELETE", v.conn("/users/alice/certificate"), nil, nil, 0)
	if err := alice.WaitLog(lab.Within(t, 5*time.Second), "certificate revoked"); err != nil {
		t.Fatalf("alice's live session was not cut: %v", err)
	}
	revoked := ovpnclient.Start(t, v.client, ovpnclient.Options{Config: aliceProfileWithOldCert(t, alice), User: "alice"})
	defer revoked.Stop()
	if err := revoked.WaitLog(lab.Within(t, 20*time.Second), "AUTH_FAILED,certificate"); err != nil {
		t.Fatalf("alice's revoked certificate was not refused: %v", err)
	}
	if err := v.box.Proc.WaitOutput(lab.Within(t, 5*time.Second), "reason=certificate_revoked"); err != nil {
		t.Fatal(err)
	}

	// An external CA, trusted through PUT …/ca, and its CRL loaded as DER through PUT …/crl.
	ext, extPEM, _, err := pki.NewCA("Corp Devices CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v.putBody(v.conn("/ca"), []byte(extPEM))
	bob, _ := ext.IssueClient("bob", 0)
	bobProfile := replaceBlock(replaceBlock(v.profile("carol", ""), "cert", bob.CertPEM), "key", bob.KeyPEM)
	bc := v.connect("bob", bobProfile, nil)
	v.pingLAN()
	crlPEM, _ := ext.CRL([]pki.Revocation{{Serial: bob.Serial, Time: time.Now()}}, big.NewInt(1), time.Hour)
	der, _ := pem.Decode([]byte(crlPEM))
	start := time.Now()
	v.putBody(v.conn("/crl"), der.Bytes)
	if err := bc.WaitLog(lab.Within(t, 5*time.Second), "certificate revoked"); err != nil {
		t.Fatalf("bob's live session was not cut after the DER CRL: %v", err)
	}
	t.Logf("DER CRL loaded to live session cut: %v", time.Since(start).Round(time.Millisecond))
	v.refused("bob", bobProfile, nil, "AUTH_FAILED,certificate", "reason=certificate_revoked")

	// An expired certificate, made with the appliance's CA key (a secret: shown only when asked for).
	var cfg config.Config
	if err := v.box.API.Do(context.Background(), "GET", "/api/v1/config?secrets=show", nil, &cfg); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(cfg.PKI.CAs["sslvpn-users"].Certificate, string(cfg.PKI.CAs["sslvpn-users"].PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := ca.IssueClient("gina", -time.Minute)
	ginaProfile := replaceBlock(replaceBlock(v.profile("carol", ""), "cert", old.CertPEM), "key", old.KeyPEM)
	gina := ovpnclient.Start(t, v.client, ovpnclient.Options{Config: ginaProfile, User: "gina"})
	defer gina.Stop()
	if err := gina.WaitLog(lab.Within(t, 20*time.Second), "Your certificate has expired"); err != nil {
		t.Fatalf("the expired certificate's refusal is not in the client's log: %v", err)
	}
	if err := v.box.Proc.WaitOutput(lab.Within(t, 5*time.Second), "expired"); err != nil {
		t.Fatal(err)
	}
}

func (v *vpnLab) putBody(path string, body []byte) {
	v.t.Helper()
	if err := v.box.API.Do(context.Background(), "PUT", path, body, nil); err != nil {
		v.t.Fatalf("PUT %s: %v", path, err)
	}
}

// aliceProfileWithOldCert rebuilds the profile alice connected with, from the client's own files.
func aliceProfileWithOldCert(t *testing.T, c *ovpnclient.Client) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.Dir(), "client.ovpn"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func replaceBlock(profile, tag, body string) string {
	start := strings.Index(profile, "<"+tag+">\n")
	end := strings.Index(profile, "</"+tag+">")
	if start < 0 || end < 0 {
		return profile
	}
	return profile[:start] + "<" + tag + ">\n" + strings.TrimRight(body, "\n") + "\n" + profile[end:]
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

// TestOpenVPNTLSCrypt: with tls-crypt on, the downloaded profile carries the key and the client gets through;
// a client without the key is not answered at all.
func TestOpenVPNTLSCrypt(t *testing.T) {
	v := newVPNLab(t, false)
	v.commands("set sslvpn servers main openvpn tls-crypt")
	v.commit()
	profile := v.profile("hana", "")
	if !strings.Contains(profile, "<tls-crypt>\n-----BEGIN OpenVPN Static key V1-----") {
		t.Fatalf("the profile has no tls-crypt key:\n%s", profile)
	}
	c := v.connect("hana", profile, nil)
	v.pingLAN()
	c.Stop()
	start := strings.Index(profile, "<tls-crypt>")
	end := strings.Index(profile, "</tls-crypt>") + len("</tls-crypt>\n")
	without := ovpnclient.Start(t, v.client, ovpnclient.Options{Config: profile[:start] + profile[end:], User: "hana"})
	defer without.Stop()
	if err := without.WaitLog(lab.Within(t, 20*time.Second), "Connection reset"); err != nil {
		t.Fatalf("a client without the tls-crypt key: %v", err)
	}
}

// TestOpenVPNFlavorLimit: one user may hold 2 sessions, the third is refused with that limit named; flavor small
// admits 20 sessions (of 20 users here); the 21st stock client is refused with the limit named, and both refusals
// are counted.
func TestOpenVPNFlavorLimit(t *testing.T) {
	v := newVPNLab(t, false)
	var clients []*ovpnclient.Client
	profiles := map[string]string{}
	profile := func(user string) string {
		if profiles[user] == "" {
			profiles[user] = v.profile(user, "&proto=udp")
		}
		return profiles[user]
	}
	start := func(user string) {
		clients = append(clients, ovpnclient.Start(t, v.client, ovpnclient.Options{Config: profile(user), User: user}))
	}
	waitAll := func() {
		for i, c := range clients {
			// The clients share one namespace, so all but the first fail to add the pushed route again: a warning
			// ("Completed With Errors"), not a failed connection.
			if err := c.WaitConnected(lab.Within(t, 60*time.Second)); err != nil {
				t.Fatalf("client %d of %d did not connect: %v", i+1, len(clients), err)
			}
		}
	}
	start("crowd-0")
	start("crowd-0")
	waitAll()
	v.refused("crowd-0", profile("crowd-0"), nil, "AUTH_FAILED,user crowd-0 already has 2 sessions, the most one user may hold (max-sessions-per-user 2)", "reason=user_session_limit")
	for i := 1; i < 19; i++ {
		start(fmt.Sprint("crowd-", i))
	}
	waitAll()
	v.refused("crowd-19", profile("crowd-19"), nil, "AUTH_FAILED,connection limit reached: 20 sessions (flavor small)", "reason=session_limit")
	var sessions struct{ Sessions []struct{ Address string } }
	v.rest("GET", v.conn("/sessions"), nil, &sessions, 0)
	seen := map[string]bool{}
	for _, s := range sessions.Sessions {
		seen[s.Address] = true
	}
	if len(sessions.Sessions) != 20 || len(seen) != 20 {
		t.Fatalf("%d sessions on %d addresses, want 20 on 20", len(sessions.Sessions), len(seen))
	}
	var st struct {
		Servers []struct{ Refused map[string]int }
	}
	v.rest("GET", "/api/v1/sslvpn/status", nil, &st, 0)
	if r := st.Servers[0].Refused; r["session_limit"] != 1 || r["user_session_limit"] != 1 {
		t.Fatalf("refusals counted %+v", r)
	}
}

// TestOpenVPNIdleTimeout: a client that sends nothing but its keepalive pings is idle, and the server ends its
// session after the idle timeout (60 s, the shortest the configuration allows), saying why in both logs.
func TestOpenVPNIdleTimeout(t *testing.T) {
	v := newVPNLab(t, false)
	v.commands("set sslvpn servers main idle-timeout 60")
	v.commit()
	c := v.connect("ida", v.profile("ida", "&proto=udp"), nil)
	defer c.Stop()
	v.pingLAN()
	lastTraffic := time.Now()
	if err := v.box.Proc.WaitOutput(lab.Within(t, 90*time.Second), "ending an idle session"); err != nil {
		t.Fatalf("a session with only keepalives for 90 s was not ended: %v", err)
	}
	// The watcher looks every 7.5 s and counts from the first look that saw the ping's bytes.
	if idle := time.Since(lastTraffic); idle < 60*time.Second {
		t.Fatalf("ended after %v without traffic, before the idle timeout of 60 s", idle.Round(time.Millisecond))
	}
	if err := c.WaitLog(lab.Within(t, 5*time.Second), "idle timeout"); err != nil {
		t.Fatalf("the client was not told why: %v", err)
	}
	var sessions struct{ Sessions []struct{ User string } }
	if err := lab.WaitFor(lab.Within(t, 5*time.Second), 100*time.Millisecond, func() error {
		v.rest("GET", v.conn("/sessions"), nil, &sessions, 0)
		if len(sessions.Sessions) != 0 {
			return fmt.Errorf("sessions still listed: %+v", sessions.Sessions)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSSLVPNBehindNAT is the usual cloud deployment: the VPN service's external address is a public address that
// a NAT in front of the box forwards to it, on none of the box's interfaces. The connection is created through
// the REST API like any other (it listens on every address then), and the downloaded profiles, unedited, connect
// through the NAT over TCP and UDP and reach the LAN.
//
//	client 198.51.100.2 ── 198.51.100.1 [nat: 203.0.113.10 → 192.0.2.1] 192.0.2.254 ── eth0 192.0.2.1 [box] eth1 ── lan
func TestSSLVPNBehindNAT(t *testing.T) {
	l := lab.New(t, "openvpn", "ping", "unshare", "nft")
	v := &vpnLab{t: t, l: l}
	boxNS, nat := l.Namespace("box"), l.Namespace("nat")
	v.client, v.lan = l.Namespace("cli"), l.Namespace("lan")
	l.Link(v.client, "eth0", "198.51.100.2/24", nat, "eth0", "198.51.100.1/24")
	l.Link(nat, "eth1", "192.0.2.254/24", boxNS, "eth0", "")
	l.Link(boxNS, "eth1", "", v.lan, "eth0", "10.50.0.2/24")
	v.client.AddRoute("default", "198.51.100.1")
	v.lan.AddRoute("default", "10.50.0.1")
	nat.EnableForwarding()
	nat.MustRun("nft", "add table ip nat")
	nat.MustRun("nft", "add chain ip nat prerouting { type nat hook prerouting priority -100 ; }")
	nat.MustRun("nft", "add rule ip nat prerouting ip daddr 203.0.113.10 dnat to 192.0.2.1")
	v.box = toridetest.Start(t, boxNS, t.TempDir())
	v.commands("set system interfaces eth0 address 192.0.2.1/24", "set system interfaces eth1 address 10.50.0.1/24",
		"set system static-routes 0.0.0.0/0 next-hop 192.0.2.254")
	v.commit()
	v.createVPN("203.0.113.10", false)

	for _, proto := range []string{"", "&proto=udp"} {
		profile := v.profile("nora", proto)
		if !strings.Contains(profile, "remote 203.0.113.10 ") {
			t.Fatalf("the profile does not dial the public address:\n%s", profile)
		}
		c := v.connect("nora", profile, nil)
		v.pingLAN()
		c.Stop()
		if err := v.box.Proc.WaitOutput(lab.Within(t, 10*time.Second), "client disconnected"); err != nil {
			t.Fatal(err)
		}
	}
}
