package sslvpn

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"golang.org/x/crypto/bcrypt"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/userauth"
)

// newTestServer is a server of a concentrator over an in-memory TUN device (see newTestConcentrator), started
// as the appliance starts one, without engines or listeners unless cfg enables them.
func newTestServer(t *testing.T, cfg *ServerConfig) *Server {
	t.Helper()
	return newTestConcentrator(t).start(t, cfg)
}

func certOf(cn string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, SerialNumber: big.NewInt(1)}
}

func totp(t *testing.T, key []byte, skew int) string {
	t.Helper()
	c, err := hotp.GenerateCodeCustom(userauth.Base32(key), uint64(time.Now().Unix()/30+int64(skew)),
		hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFailedLoginsLookTheSame: a wrong or replayed code, an unknown user, a user without a key, a disabled user, a
// lockout, a wrong password: the client is told the same words, whatever the protocol; the server counts each
// by its reason.
func TestFailedLoginsLookTheSame(t *testing.T) {
	alice, carol := []byte("alice's 20-byte key!"), []byte("carol's 20-byte key!")
	hash, err := bcrypt.GenerateFromPassword([]byte("erin-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ServerConfig{OTP: true, MaxSessions: 10, Users: map[string]User{
		"alice": {OTPSecret: alice},
		"carol": {OTPSecret: carol, Disabled: true},
		"dave":  {},
		"erin":  {PasswordHash: string(hash)},
		"fred":  {PasswordHash: string(hash), Disabled: true},
	}, Groups: []*GroupConfig{{Name: "pw", Password: true}}}
	s := newTestServer(t, cfg)
	wrong := fmt.Sprintf("%06d", (atoi(totp(t, alice, 0))+1)%1000000)
	src := 0
	ovpn := func(user, code string) *Login {
		src++
		return &Login{Protocol: "openvpn-udp", Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(src)}), 40000),
			Cert: certOf(user), OTP: code, HasOTP: true}
	}
	ac := func(user, password string) *Login {
		src++
		return &Login{Protocol: "anyconnect", Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(src)}), 40000),
			Group: "pw", User: user, Password: password}
	}
	ctx := context.Background()
	used := totp(t, alice, 0)
	if _, _, err := s.authenticate(ctx, ovpn("alice", used)); err != nil {
		t.Fatalf("alice's code: %v", err)
	}
	locked := ovpn("alice", wrong)
	for range 5 {
		if _, _, err := s.authenticate(ctx, locked); err == nil {
			t.Fatal("a wrong code was accepted")
		}
	}
	for _, tc := range []struct {
		name, reason string
		login        *Login
	}{
		{"wrong code", RefusedOTP, ovpn("alice", wrong)},
		{"replayed code", RefusedOTP, ovpn("alice", used)},
		{"unknown user", RefusedOTP, ovpn("mallory", totp(t, alice, 0))},
		{"no key issued", RefusedOTP, ovpn("dave", totp(t, alice, 0))},
		{"disabled user, right code", RefusedDisabled, ovpn("carol", totp(t, carol, 0))},
		{"locked out, right code", RefusedLocked, locked},
		{"wrong password", RefusedPassword, ac("erin", "guess")},
		{"unknown user, password", RefusedPassword, ac("nobody", "erin-pw")},
		{"disabled user, right password", RefusedDisabled, ac("fred", "erin-pw")},
	} {
		if tc.name == "locked out, right code" {
			tc.login.OTP = totp(t, alice, 1)
		}
		before := s.refused[tc.reason]
		_, _, err := s.authenticate(ctx, tc.login)
		var r *Refusal
		if !errors.As(err, &r) {
			t.Fatalf("%s: %v, want a refusal", tc.name, err)
		}
		if r.Msg != userauth.ErrLoginFailed.Error() || r.Reason != tc.reason || s.refused[tc.reason] != before+1 {
			t.Errorf("%s: told the client %q, counted as %q (%d → %d); want %q counted as %q",
				tc.name, r.Msg, r.Reason, before, s.refused[tc.reason], userauth.ErrLoginFailed, tc.reason)
		}
	}
	// Every failure counted for the lockouts, the key-less user's too.
	if got := s.auth.Counters(); got.Failures != 13 {
		t.Errorf("failures counted: %+v", got)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestSessionsPerUser: a user may hold MaxSessionsPerUser sessions; the next is refused with its own reason and a
// message naming the limit; other users are not affected, and a session's end frees its place.
func TestSessionsPerUser(t *testing.T) {
	s := newTestServer(t, &ServerConfig{MaxSessions: 10, MaxSessionsPerUser: 2})
	attach := func(user string) (*Session, error) {
		return s.attach(user, false, &Login{Protocol: "openvpn-udp", Cert: certOf(user)}, &recordingPeer{}, peerMeters{})
	}
	var alice []*Session
	for i := range 2 {
		sess, err := attach("alice")
		if err != nil {
			t.Fatalf("alice's session %d: %v", i+1, err)
		}
		alice = append(alice, sess)
	}
	_, err := attach("alice")
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != RefusedUserLimit || !strings.Contains(r.Msg, "max-sessions-per-user 2") || s.refused[RefusedUserLimit] != 1 {
		t.Fatalf("alice's third session: %v", err)
	}
	if _, err := attach("bob"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	s.release(alice[0], errors.New("left"))
	if _, err := attach("alice"); err != nil {
		t.Fatalf("alice after one of hers ended: %v", err)
	}
}

// fakeACSession is an AnyConnect engine session as the core sees it.
type fakeACSession struct {
	recordingPeer
	id    uint64
	ident *anyconnect.Identity
	grant *anyconnect.Grant // once connected
}

func (f *fakeACSession) ID() uint64                     { return f.id }
func (f *fakeACSession) Group() string                  { return "pw" }
func (f *fakeACSession) Identity() *anyconnect.Identity { return f.ident }
func (f *fakeACSession) Remote() netip.AddrPort         { return netip.AddrPort{} }
func (f *fakeACSession) Stats() anyconnect.SessionStats { return anyconnect.SessionStats{} }
func (f *fakeACSession) DTLS() bool                     { return false }

// TestAnyConnectCookieChecksTheUserAgain: a login's cookie opens a tunnel, first or again, only while its user is
// neither disabled nor deleted; a user known by a certificate alone is not a configured user to delete.
func TestAnyConnectCookieChecksTheUserAgain(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	users := func(disabled bool, present ...string) map[string]User {
		m := map[string]User{}
		for _, u := range present {
			m[u] = User{PasswordHash: string(hash), Disabled: disabled}
		}
		return m
	}
	cfg := &ServerConfig{MaxSessions: 10, Users: users(false, "alice"), Groups: []*GroupConfig{{Name: "pw", Password: true}, {Name: "certs", Certificate: true}}}
	s := newTestServer(t, cfg)
	b := (*anyconnectBackend)(s)
	ctx := context.Background()
	login := func(group, user string, cert bool) *anyconnect.Identity {
		t.Helper()
		req := &anyconnect.AuthRequest{Remote: netip.MustParseAddrPort("192.0.2.2:40000"), Group: group, Username: user, Password: "pw"}
		if cert {
			req.Username, req.Certificate = "", certOf(user)
		}
		id, err := b.Authenticate(ctx, req)
		if err != nil {
			t.Fatalf("%s logs in: %v", user, err)
		}
		return id
	}
	n := uint64(0)
	connect := func(id *anyconnect.Identity) error {
		n++
		_, err := b.Connect(ctx, &anyconnect.ConnectRequest{Remote: netip.MustParseAddrPort("192.0.2.2:40001"), Group: "pw", Identity: id},
			&fakeACSession{id: n, ident: id})
		return err
	}
	reconnect := func(id *anyconnect.Identity) error {
		return b.CheckReconnect(ctx, &anyconnect.ConnectRequest{Identity: id}, &fakeACSession{ident: id})
	}
	alice, aliceLater, erin := login("pw", "alice", false), login("pw", "alice", false), login("certs", "erin", true)
	if err := connect(alice); err != nil {
		t.Fatalf("alice's first CONNECT: %v", err)
	}
	for _, step := range []struct {
		what  string
		users map[string]User
		ok    bool
	}{
		{"alice disabled", users(true, "alice"), false},
		{"alice deleted", users(false), false},
		{"alice back", users(false, "alice"), true},
	} {
		c := *cfg
		c.Users = step.users
		s.cfg.Store(&c)
		for name, err := range map[string]error{"waiting cookie": connect(aliceLater), "reconnect": reconnect(alice)} {
			var r *Refusal
			switch {
			case step.ok && err != nil:
				t.Errorf("%s: %s refused: %v", step.what, name, err)
			case !step.ok && (!errors.As(err, &r) || r.Reason != RefusedDisabled):
				t.Errorf("%s: %s: %v, want refused as %s", step.what, name, err, RefusedDisabled)
			}
		}
		if err := connect(erin); err != nil || reconnect(erin) != nil {
			t.Errorf("%s: erin, known by her certificate only, refused: %v", step.what, err)
		}
	}
}

// TestUpdateCutsDisabledAndDeletedUsers: a commit that disables a user, or deletes one who logged in as a
// configured user, cuts their sessions; a user known by a certificate alone keeps theirs.
func TestUpdateCutsDisabledAndDeletedUsers(t *testing.T) {
	s := newTestServer(t, &ServerConfig{MaxSessions: 10, Users: map[string]User{"alice": {}, "bob": {}, "dave": {}}})
	peers := map[string]*recordingPeer{}
	for _, u := range []struct {
		name  string
		known bool
	}{{"alice", true}, {"bob", true}, {"carol", false}, {"dave", true}} {
		peers[u.name] = &recordingPeer{}
		if _, err := s.attach(u.name, u.known, &Login{Protocol: "openvpn-udp", Cert: certOf(u.name)}, peers[u.name], peerMeters{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.update(&ServerConfig{MaxSessions: 10, Users: map[string]User{"alice": {Disabled: true}, "dave": {}}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": "user disabled", "bob": "user deleted", "carol": "", "dave": ""}
	for name, p := range peers {
		got := strings.Join(p.reasons(), ",")
		if got != want[name] {
			t.Errorf("%s's session closed with %q, want %q", name, got, want[name])
		}
	}
}
