// Package ovpnconf renders the .ovpn client configuration a user downloads for the stock OpenVPN 2.6 client,
// after the cloud guide's template: TCP 443, auth-user-pass with `static-challenge "pin otp" 1` only when the
// server asks for a one-time password (the OpenVPN login checks nothing else that is typed: the user is the
// certificate's, and a stock client stops to ask for what auth-user-pass names), remote-cert-tls server, and the
// CA, certificate and key inline.
package ovpnconf

import (
	"fmt"
	"strings"
)

// Profile is what goes into one client configuration.
type Profile struct {
	Comment  string   // a first line saying what this is for
	Remote   string   // the server's outside address or name
	Port     int      // 443 for TCP by default
	Proto    string   // "tcp" or "udp"
	OTP      bool     // the server asks for a TOTP code
	Ciphers  []string // the server's data ciphers, OpenVPN names, strongest first
	Auth     string   // the HMAC digest with CBC ciphers ("SHA1")
	CA       string   // PEM
	Cert     string   // PEM; empty when the user brings their own
	Key      string   // PEM
	TLSCrypt string   // the tls-crypt static key, when the server uses one
}

// Render writes the configuration.
func Render(p Profile) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	if p.Comment != "" {
		line("# %s", strings.ReplaceAll(p.Comment, "\n", " "))
	}
	if p.OTP {
		line("# The client asks for a user name (your user id), a password (leave it empty) and the one-time password.")
	} else {
		line("# The client asks for nothing: your certificate below identifies you.")
	}
	proto := p.Proto
	if proto == "" {
		proto = "tcp"
	}
	port := p.Port
	if port == 0 {
		port = 443
	}
	line("client")
	line("dev tun")
	line("proto %s", proto)
	line("remote %s %d", p.Remote, port)
	line("resolv-retry infinite")
	line("nobind")
	if p.OTP {
		// The user name is the user id, the password empty, the response the one-time password.
		line("auth-user-pass")
		line(`static-challenge "pin otp" 1`)
	}
	line("persist-key")
	line("persist-tun")
	line("remote-cert-tls server")
	if len(p.Ciphers) > 0 {
		line("data-ciphers %s", strings.Join(p.Ciphers, ":"))
		for _, c := range p.Ciphers {
			if strings.HasSuffix(c, "-CBC") && p.Auth != "" {
				line("auth %s", p.Auth)
				break
			}
		}
	}
	if proto == "udp" {
		line("explicit-exit-notify 1")
	}
	line("verb 3")
	block := func(tag, body string) {
		if body != "" {
			line("<%s>\n%s</%s>", tag, strings.TrimRight(body, "\n")+"\n", tag)
		}
	}
	block("ca", p.CA)
	block("cert", p.Cert)
	block("key", p.Key)
	block("tls-crypt", p.TLSCrypt)
	return b.String()
}
