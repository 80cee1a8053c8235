package anyconnect

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// A login's first form (group list, user name, password) holds no state on the server: its handle, the
// <aggauth-handle> the client copies back and the webvpncontext cookie, is a form token that carries what the
// answer needs, sealed with an HMAC under a key the server draws when it starts.
//
// Why a token rather than a table entry made at GET or init: a form costs a stranger one request, and it may
// ask for thousands a second on one kept-alive connection; whatever the server keeps per form, that stranger
// fills. What the answer to the main form needs is only which group's form it answers and until when the
// answer is welcome; both fit in the handle, and the HMAC stops a client from naming a later expiry. Nothing in
// the token is secret and it grants nothing: anyone may ask for the same form. A GET / (old clients, and
// openconnect without XML POST) and a POST init are answered alike, with no state.
//
// State begins with the answer to the main form, and only when a second form follows (the one-time password):
// the user name and password wait for it in the table of pending logins, bounded per connection, per source and
// in total (see package shed). A new key at each start makes a form answered across a restart "expired", as the
// table lost at a restart did before.
//
// Layout, sent as lower-case hex (54 digits; a pending login's handle has 32):
//
//	version (1) = 1 | group index (2) | expiry, Unix seconds (8) | HMAC-SHA256 of the former, first 16 bytes
const (
	formTokenVersion = 1
	formTokenBody    = 1 + 2 + 8
	formTokenMAC     = 16
	formTokenLen     = formTokenBody + formTokenMAC
)

// formToken is the handle of g's main form, welcome until expires.
func (s *Server) formToken(g *group, expires time.Time) string {
	var b [formTokenLen]byte
	b[0] = formTokenVersion
	binary.BigEndian.PutUint16(b[1:3], uint16(g.index))
	binary.BigEndian.PutUint64(b[3:formTokenBody], uint64(expires.Unix()))
	s.formMAC(b[formTokenBody:], b[:formTokenBody])
	return hex.EncodeToString(b[:])
}

// openFormToken returns the group and expiry of a form token this server made, or false for anything else (a
// pending login's handle, a token of another key, garbage). It does not judge the expiry.
func (s *Server) openFormToken(tok string) (*group, time.Time, bool) {
	var b [formTokenLen]byte
	if len(tok) != 2*formTokenLen {
		return nil, time.Time{}, false
	}
	if _, err := hex.Decode(b[:], []byte(tok)); err != nil {
		return nil, time.Time{}, false
	}
	var mac [formTokenMAC]byte
	s.formMAC(mac[:], b[:formTokenBody])
	if b[0] != formTokenVersion || !hmac.Equal(mac[:], b[formTokenBody:]) {
		return nil, time.Time{}, false
	}
	i := int(binary.BigEndian.Uint16(b[1:3]))
	exp := binary.BigEndian.Uint64(b[3:formTokenBody])
	if i >= len(s.groups) {
		return nil, time.Time{}, false
	}
	return s.groups[i], time.Unix(int64(exp), 0), true
}

func (s *Server) formMAC(dst, body []byte) {
	m := hmac.New(sha256.New, s.formKey[:])
	m.Write(body)
	copy(dst, m.Sum(nil))
}
