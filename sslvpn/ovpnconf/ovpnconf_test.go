package ovpnconf

import (
	"strings"
	"testing"
)

func TestRenderFollowsTheTemplate(t *testing.T) {
	got := Render(Profile{Comment: "alice on main", Remote: "203.0.113.1", OTP: true, Ciphers: []string{"AES-256-GCM", "AES-128-CBC"},
		Auth: "SHA1", CA: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n", Cert: "CERT\n", Key: "KEY"})
	for _, want := range []string{
		"client\ndev tun\nproto tcp\nremote 203.0.113.1 443\nresolv-retry infinite\nnobind\nauth-user-pass\nstatic-challenge \"pin otp\" 1\npersist-key\npersist-tun\nremote-cert-tls server\n",
		"data-ciphers AES-256-GCM:AES-128-CBC\nauth SHA1\n",
		"<ca>\n-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n</ca>\n<cert>\nCERT\n</cert>\n<key>\nKEY\n</key>\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing:\n%s\nin:\n%s", want, got)
		}
	}
	if strings.Contains(got, "tls-crypt") || strings.Contains(got, "explicit-exit-notify") {
		t.Errorf("unexpected lines in:\n%s", got)
	}
	plain := Render(Profile{Remote: "vpn.example.net", Proto: "udp", Port: 1194, Ciphers: []string{"AES-256-GCM"}, Auth: "SHA1"})
	if strings.Contains(plain, "static-challenge") || strings.Contains(plain, "auth SHA1") || !strings.Contains(plain, "remote vpn.example.net 1194") {
		t.Errorf("without OTP or CBC:\n%s", plain)
	}
	// Without OTP the server checks nothing typed, so the client must not stop to ask for it.
	if strings.Contains(plain, "auth-user-pass") || !strings.Contains(plain, "# The client asks for nothing") {
		t.Errorf("without OTP the profile asks for a user name:\n%s", plain)
	}
	if !strings.Contains(got, "# The client asks for a user name (your user id), a password (leave it empty) and the one-time password.\n") {
		t.Errorf("with OTP the comment does not say what is asked:\n%s", got)
	}
}
