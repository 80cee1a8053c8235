package tests

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"toride/appliance/config"
	"toride/tests/lab"
	"toride/tests/occlient"
)

// acFiles are what an AnyConnect user holds: the CA file and, when issued, their certificate and key.
type acFiles struct{ ca, cert, key string }

// acUser issues user a certificate through the API and writes the files openconnect reads.
func (v *vpnLab) acUser(user string) acFiles {
	v.t.Helper()
	var out struct{ Certificate, PrivateKey, CA string }
	var raw struct {
		Certificate string `json:"certificate"`
		PrivateKey  string `json:"private_key"`
		CA          string `json:"ca"`
	}
	v.rest("POST", v.conn("/users/"+user+"/certificate"), nil, &raw, 0)
	out.Certificate, out.PrivateKey, out.CA = raw.Certificate, raw.PrivateKey, raw.CA
	dir := v.t.TempDir()
	f := acFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	for path, body := range map[string]string{f.ca: out.CA, f.cert: out.Certificate, f.key: out.PrivateKey} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			v.t.Fatal(err)
		}
	}
	return f
}

// setPassword gives user a password through the configuration.
func (v *vpnLab) setPassword(user, password string) {
	v.t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		v.t.Fatal(err)
	}
	v.commands(fmt.Sprintf("set users %s password-hash %s", user, config.Quote(string(hash))))
}

// openconnect starts the stock client against the box and waits for its tunnel.
func (v *vpnLab) openconnect(f acFiles, stdin string, args ...string) (*occlient.Client, map[string]string) {
	v.t.Helper()
	c := occlient.Start(v.t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: f.ca, Stdin: stdin, Args: args})
	env, err := c.WaitConnected(lab.Within(v.t, 30*time.Second))
	if err != nil {
		v.t.Fatalf("openconnect did not connect: %v\nserver log:\n%s", err, v.box.Proc.Output())
	}
	return c, env
}

func inPool(t *testing.T, env map[string]string, pool string) {
	t.Helper()
	a, err := netip.ParseAddr(env["INTERNAL_IP4_ADDRESS"])
	if err != nil || !netip.MustParsePrefix(pool).Contains(a) {
		t.Fatalf("client address %q is not in %s", env["INTERNAL_IP4_ADDRESS"], pool)
	}
}

// TestAnyConnectLoginsAndGroups: certificate-only, password+OTP and certificate+OTP logins of the stock
// openconnect client through connection profiles with their own pools and routes, each reaching the LAN, over
// DTLS.
func TestAnyConnectLoginsAndGroups(t *testing.T) {
	v := newVPNLab(t, false)
	alice := v.enroll("alice")
	bob := v.enroll("bob")
	v.setPassword("alice", "alice-password")
	v.commands(
		"set sslvpn servers main anyconnect groups staff certificate",
		"set sslvpn servers main anyconnect groups staff label 'Staff (certificate)'",
		"set sslvpn servers main anyconnect groups partners password",
		"set sslvpn servers main anyconnect groups partners otp",
		"set sslvpn servers main anyconnect groups partners pool 10.9.0.0/24",
		"set sslvpn servers main anyconnect groups partners local-network 10.50.0.0/25",
		"set sslvpn servers main anyconnect groups secure certificate",
		"set sslvpn servers main anyconnect groups secure otp",
		"set sslvpn servers main anyconnect default-group staff",
	)
	v.commit()
	aliceFiles := v.acUser("alice")
	bobFiles := v.acUser("bob")

	// Certificate only, in the server's pool, over DTLS.
	c, env := v.openconnect(aliceFiles, "", "--authgroup=Staff (certificate)", "-c", aliceFiles.cert, "-k", aliceFiles.key)
	inPool(t, env, "10.8.0.0/24")
	v.pingLAN()
	if err := c.Proc.WaitOutput(lab.Within(t, 10*time.Second), "Established DTLS connection"); err != nil {
		t.Fatalf("no DTLS: %v", err)
	}
	var sessions struct {
		Sessions []struct {
			User, Group, Protocol string
			DTLS                  bool
		}
	}
	v.rest("GET", "/api/v1/sslvpn/sessions", nil, &sessions, 0)
	if len(sessions.Sessions) != 1 || !sessions.Sessions[0].DTLS || sessions.Sessions[0].Group != "staff" || sessions.Sessions[0].Protocol != "anyconnect" {
		t.Fatalf("sessions %+v, want alice's over DTLS in group staff", sessions.Sessions)
	}
	c.Stop()

	// Password and OTP, in the partners' own pool with their own routes.
	c, env = v.openconnect(aliceFiles, "alice-password\n"+code(t, alice, 0)+"\n", "--authgroup=partners", "-u", "alice", "--passwd-on-stdin")
	inPool(t, env, "10.9.0.0/24")
	if routes := occlient.Routes(env); !slices.Contains(routes, "10.50.0.0/25") || slices.Contains(routes, "10.50.0.0/24") {
		t.Fatalf("partners got routes %v, want their 10.50.0.0/25", routes)
	}
	v.pingLAN()
	c.Stop()

	// Certificate and OTP.
	c, env = v.openconnect(bobFiles, code(t, bob, 0)+"\n", "--authgroup=secure", "-c", bobFiles.cert, "-k", bobFiles.key, "--passwd-on-stdin")
	inPool(t, env, "10.8.0.0/24")
	v.pingLAN()
	c.Stop()

	// A wrong password is refused with the form's message, the same as for any failed login, and counted.
	bad := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: aliceFiles.ca,
		Stdin: "wrong\n" + code(t, alice, 1) + "\n", Args: []string{"--authgroup=partners", "-u", "alice", "--passwd-on-stdin"}})
	if err := bad.Proc.WaitOutput(lab.Within(t, 20*time.Second), "login failed: wrong user name, password or one-time password"); err != nil {
		t.Fatalf("the client never showed the refusal: %v", err)
	}
	bad.Stop()
	if err := v.box.Proc.WaitOutput(lab.Within(t, 5*time.Second), "reason=password"); err != nil {
		t.Fatal(err)
	}
}

// TestAnyConnectCSTPWhenUDPIsBlocked: with UDP 443 dropped in the client's network, the tunnel still carries
// traffic over the TLS connection.
func TestAnyConnectCSTPWhenUDPIsBlocked(t *testing.T) {
	v := newVPNLab(t, false)
	f := v.acUser("carol")
	v.client.MustRun("nft", "add table inet block")
	v.client.MustRun("nft", "add chain inet block out { type filter hook output priority 0 ; }")
	v.client.MustRun("nft", "add rule inet block out udp dport 443 drop")
	c, _ := v.openconnect(f, "", "-c", f.cert, "-k", f.key)
	defer c.Stop()
	v.pingLAN()
	var sessions struct{ Sessions []struct{ DTLS bool } }
	v.rest("GET", "/api/v1/sslvpn/sessions", nil, &sessions, 0)
	if len(sessions.Sessions) != 1 || sessions.Sessions[0].DTLS {
		t.Fatalf("sessions %+v, want one over TLS", sessions.Sessions)
	}
}

// TestAnyConnectCookieReconnectAndRevocation: a client that lost its connection comes back with its cookie to the
// same address without logging in again; once its certificate is revoked, its session is cut and the cookie is
// refused.
func TestAnyConnectCookieReconnectAndRevocation(t *testing.T) {
	v := newVPNLab(t, false)
	f := v.acUser("dave")
	login := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: f.ca,
		Args: []string{"-c", f.cert, "-k", f.key, "--authenticate"}})
	cookie, err := login.Cookie(lab.Within(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	withCookie := func() (*occlient.Client, map[string]string) {
		return v.openconnect(f, cookie+"\n", "-c", f.cert, "-k", f.key, "--cookie-on-stdin")
	}
	first, env := withCookie()
	addr := env["INTERNAL_IP4_ADDRESS"]
	v.pingLAN()
	first.Proc.Kill() // the laptop's lid closes: no goodbye
	again, env := withCookie()
	if env["INTERNAL_IP4_ADDRESS"] != addr {
		t.Fatalf("reconnected with the cookie to %s, want the same %s", env["INTERNAL_IP4_ADDRESS"], addr)
	}
	v.pingLAN()

	v.rest("DELETE", v.conn("/users/dave/certificate"), nil, nil, 0)
	if err := again.Proc.WaitOutput(lab.Within(t, 10*time.Second), "certificate revoked"); err != nil {
		t.Fatalf("the revoked certificate's session was not cut: %v", err)
	}
	<-again.Proc.Done()
	back := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: f.ca, Stdin: cookie + "\n",
		Args: []string{"-c", f.cert, "-k", f.key, "--cookie-on-stdin"}})
	if _, err := back.WaitConnected(lab.Within(t, 15*time.Second)); err == nil {
		t.Fatal("the revoked client came back with its old cookie")
	}
}

// TestAnyConnectAndOpenVPNShareThePortAndTheLimit: an OpenVPN client and an openconnect client connect at once on
// TCP 443, and the session limit counts both.
func TestAnyConnectAndOpenVPNShareThePortAndTheLimit(t *testing.T) {
	v := newVPNLab(t, false)
	v.commands("set sslvpn servers main max-sessions 2")
	v.commit()
	ov := v.connect("erin", v.profile("erin", ""), nil) // TCP 443
	defer ov.Stop()
	f := v.acUser("frank")
	oc, env := v.openconnect(f, "", "-c", f.cert, "-k", f.key)
	defer oc.Stop()
	inPool(t, env, "10.8.0.0/24")
	v.pingLAN()
	var sessions struct{ Sessions []struct{ Protocol string } }
	v.rest("GET", "/api/v1/sslvpn/sessions", nil, &sessions, 0)
	if len(sessions.Sessions) != 2 {
		t.Fatalf("sessions %+v, want an OpenVPN and an AnyConnect one", sessions.Sessions)
	}
	// A third client, of either protocol, is over the limit.
	g := v.acUser("gail")
	third := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: g.ca, Args: []string{"-c", g.cert, "-k", g.key}})
	defer third.Stop()
	if err := third.Proc.WaitOutput(lab.Within(t, 20*time.Second), "connection limit reached: 2 sessions"); err != nil {
		t.Fatalf("the third client was not refused with the limit: %v", err)
	}

}

// TestAnyConnectDisabledAndDeletedUsers: a commit that disables a user makes the cookie of their finished login
// useless to the stock client, and one that deletes a user cuts their live session, telling the client why.
func TestAnyConnectDisabledAndDeletedUsers(t *testing.T) {
	v := newVPNLab(t, false)
	v.setPassword("alice", "alice-password")
	v.setPassword("bob", "bob-password")
	v.commands("set sslvpn servers main anyconnect groups staff password")
	v.commit()
	f := v.acUser("carol") // for the CA file only

	login := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: f.ca, Stdin: "alice-password\n",
		Args: []string{"--authgroup=staff", "-u", "alice", "--passwd-on-stdin", "--authenticate"}})
	cookie, err := login.Cookie(lab.Within(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := v.openconnect(f, "bob-password\n", "--authgroup=staff", "-u", "bob", "--passwd-on-stdin")
	defer bob.Stop()
	v.pingLAN()

	v.commands("set users alice disable", "delete users bob")
	v.commit()
	if err := bob.Proc.WaitOutput(lab.Within(t, 10*time.Second), "user deleted"); err != nil {
		t.Fatalf("the deleted user's session was not cut: %v", err)
	}
	alice := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: f.ca, Stdin: cookie + "\n",
		Args: []string{"--cookie-on-stdin"}})
	defer alice.Stop()
	if _, err := alice.WaitConnected(lab.Within(t, 15*time.Second)); err == nil {
		t.Fatal("the disabled user's cookie opened a tunnel")
	}
	if !strings.Contains(alice.Proc.Output(), "401") {
		t.Errorf("the cookie was not refused with 401:\n%s", alice.Proc.Output())
	}
	var sessions struct{ Sessions []struct{ User string } }
	v.rest("GET", "/api/v1/sslvpn/sessions", nil, &sessions, 0)
	if len(sessions.Sessions) != 0 {
		t.Fatalf("sessions left: %+v", sessions.Sessions)
	}
}
