package openvpn

import (
	"encoding/base64"
	"errors"
	"strings"
)

// ErrNotStaticChallenge is returned by ParseStaticChallenge for a password not in SCRV1 form.
var ErrNotStaticChallenge = errors.New("openvpn: password is not a static-challenge response (SCRV1)")

// ParseStaticChallenge splits a password sent by a client configured with static-challenge:
// "SCRV1:<base64 password>:<base64 response>". With the seed's "pin otp" profile the password is empty and the
// response is the TOTP code. It is a pure function.
func ParseStaticChallenge(s string) (password, response string, err error) {
	rest, ok := strings.CutPrefix(s, "SCRV1:")
	if !ok {
		return "", "", ErrNotStaticChallenge
	}
	p64, r64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", ErrNotStaticChallenge
	}
	p, err := base64.StdEncoding.DecodeString(p64)
	if err != nil {
		return "", "", errors.Join(ErrNotStaticChallenge, err)
	}
	r, err := base64.StdEncoding.DecodeString(r64)
	if err != nil {
		return "", "", errors.Join(ErrNotStaticChallenge, err)
	}
	return string(p), string(r), nil
}

// FormatStaticChallenge builds the SCRV1 string a client sends (for tests and tools).
func FormatStaticChallenge(password, response string) string {
	return "SCRV1:" + base64.StdEncoding.EncodeToString([]byte(password)) + ":" +
		base64.StdEncoding.EncodeToString([]byte(response))
}
