package anyconnect

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

// FuzzFormToken feeds the main form's handle decoder what a client may send back: it must never panic, take
// only what this server sealed (seeds are sealed with the fixed key below), and give back what was sealed.
func FuzzFormToken(f *testing.F) {
	s := fuzzTokenServer(f)
	exp := time.Unix(1700000000, 0)
	for _, g := range s.groups {
		f.Add(s.formToken(g, exp))
	}
	f.Add(strings.ToUpper(s.formToken(s.groups[1], exp)))
	f.Add("6d8a8ce7ccf0a4dd0b76e4967d5c169b") // a pending login's handle
	f.Add("")
	f.Add(strings.Repeat("0", 2*formTokenLen))
	f.Add(strings.Repeat("g", 2*formTokenLen))
	f.Fuzz(func(t *testing.T, tok string) {
		g, exp, ok := s.openFormToken(tok)
		if !ok {
			return
		}
		if g == nil || s.groups[g.index] != g {
			t.Fatalf("%q: group %v", tok, g)
		}
		if again := s.formToken(g, exp); again != strings.ToLower(tok) {
			t.Fatalf("%q opened to %s, %v, which seals to %q", tok, g.Name, exp, again)
		}
	})
}

func fuzzTokenServer(t testing.TB) *Server {
	s, err := NewServer(Config{TLS: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
		Groups: []Group{{Name: "staff", Password: true}, {Name: "secure", Password: true, OTP: true}}}, fuzzBackend{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range s.formKey {
		s.formKey[i] = byte(i)
	}
	return s
}

// TestFormToken: a token opens to what was sealed, and to nothing under another key or once changed.
func TestFormToken(t *testing.T) {
	s := fuzzTokenServer(t)
	exp := time.Unix(1700000123, 0)
	tok := s.formToken(s.groups[1], exp)
	if g, e, ok := s.openFormToken(tok); !ok || g != s.groups[1] || !e.Equal(exp) {
		t.Fatalf("open: %v %v %v", g, e, ok)
	}
	other := fuzzTokenServer(t)
	other.formKey[0] ^= 1
	if _, _, ok := other.openFormToken(tok); ok {
		t.Error("opened under another key")
	}
	b := []byte(tok)
	b[5] ^= 1
	if _, _, ok := s.openFormToken(string(b)); ok {
		t.Error("opened once changed")
	}
}
