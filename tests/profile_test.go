package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
	"toride/tests/ovpnclient"
)

// TestDownloadedProfilesUnedited: every downloaded .ovpn, over TCP and UDP, with one-time passwords off and on,
// connects the stock client unedited with its standard input closed. Without OTP the client is run bare, with
// no management interface to answer a question, so it connects only if the profile asks for nothing; with OTP it
// asks for the user and the code, answered through the management interface.
func TestDownloadedProfilesUnedited(t *testing.T) {
	for _, otpOn := range []bool{false, true} {
		v := newVPNLab(t, otpOn)
		// A user per protocol: a one-time password works once.
		for user, proto := range map[string]string{"paula": "", "piet": "&proto=udp"} {
			secret := ""
			if otpOn {
				secret = v.enroll(user)
			}
			profile := v.profile(user, proto)
			if strings.Contains(profile, "auth-user-pass") != otpOn {
				t.Fatalf("OTP %v: the profile's auth-user-pass does not match what the server checks:\n%s", otpOn, profile)
			}
			if !otpOn {
				dir := t.TempDir()
				conf := filepath.Join(dir, user+".ovpn")
				if err := os.WriteFile(conf, []byte(profile), 0o600); err != nil {
					t.Fatal(err)
				}
				p := v.client.Start("openvpn", "--disable-dco", "--connect-retry-max", "1", "--config", conf)
				if err := p.WaitOutput(lab.Within(t, 20*time.Second), ovpnclient.Connected); err != nil {
					t.Fatalf("proto %q without OTP: the bare client did not connect: %v", proto, err)
				}
				v.pingLAN()
				p.Stop()
			} else {
				c := v.connect(user, profile, fixed(code(t, secret, 0)))
				v.pingLAN()
				c.Stop()
			}
			if err := v.box.Proc.WaitOutput(lab.Within(t, 10*time.Second), "client disconnected"); err != nil {
				t.Fatal(err)
			}
		}
	}
}
