// Package dtlsid finds which session a DTLS ClientHello belongs to, before any DTLS state exists for its sender.
//
// AnyConnect's PSK-NEGOTIATE tells the client an application id (X-DTLS-App-ID) on CONNECT; the client puts it
// in its ClientHello's session_id field (openconnect since 2018), and older openconnect versions in a private
// extension (48018). One UDP socket serves every client, so the gateway reads that id from the first datagram a
// new address sends and hands the datagram to that session's DTLS server.
//
//	record:    type(1)=22 version(2) epoch(2)=0 sequence(6) length(2)
//	handshake: msg_type(1)=1 length(3) message_seq(2) fragment_offset(3)=0 fragment_length(3)
//	hello:     client_version(2) random(32) session_id<0..32> cookie<0..255> cipher_suites<2..> compression<1..>
//	           extensions<0..>
//
// The parser only reads within bounds and allocates nothing; the returned id aliases the datagram.
package dtlsid

import "encoding/binary"

// AppIDExtension is openconnect's former private extension carrying the application id.
const AppIDExtension = 48018

const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12
	contentHandshake   = 22
	typeClientHello    = 1
)

// IsClientHello reports whether b is a DTLS record of epoch 0 carrying (the first fragment of) a ClientHello.
func IsClientHello(b []byte) bool {
	_, ok := hello(b)
	return ok
}

// hello returns the ClientHello body within the first record of datagram b.
func hello(b []byte) ([]byte, bool) {
	if len(b) < recordHeaderLen+handshakeHeaderLen || b[0] != contentHandshake || b[1] != 0xfe {
		return nil, false
	}
	if binary.BigEndian.Uint16(b[3:5]) != 0 { // epoch
		return nil, false
	}
	rlen := int(binary.BigEndian.Uint16(b[11:13]))
	rec := b[recordHeaderLen:]
	if rlen < len(rec) {
		rec = rec[:rlen]
	}
	if len(rec) < handshakeHeaderLen || rec[0] != typeClientHello {
		return nil, false
	}
	if rec[6] != 0 || rec[7] != 0 || rec[8] != 0 { // fragment offset: the id is in the first fragment
		return nil, false
	}
	flen := int(rec[9])<<16 | int(rec[10])<<8 | int(rec[11])
	body := rec[handshakeHeaderLen:]
	if flen < len(body) {
		body = body[:flen]
	}
	return body, true
}

// AppID returns the application id of a ClientHello datagram: the extension's contents when present, else the
// session_id. ok is false when b is not a ClientHello or its id is empty.
func AppID(b []byte) (id []byte, ok bool) {
	body, ok := hello(b)
	if !ok {
		return nil, false
	}
	p := 2 + 32 // client_version, random
	if len(body) < p+1 {
		return nil, false
	}
	sidLen := int(body[p])
	if sidLen > 32 || len(body) < p+1+sidLen {
		return nil, false
	}
	sid := body[p+1 : p+1+sidLen]
	p += 1 + sidLen
	if ext, found := findExtension(body, p); found {
		return ext, len(ext) > 0
	}
	return sid, len(sid) > 0
}

// findExtension skips cookie, cipher suites and compression methods from p and looks for AppIDExtension.
func findExtension(body []byte, p int) ([]byte, bool) {
	skip8 := func() bool {
		if p+1 > len(body) {
			return false
		}
		p += 1 + int(body[p])
		return p <= len(body)
	}
	skip16 := func() bool {
		if p+2 > len(body) {
			return false
		}
		p += 2 + int(binary.BigEndian.Uint16(body[p:]))
		return p <= len(body)
	}
	if !skip8() || !skip16() || !skip8() { // cookie, cipher suites, compression methods
		return nil, false
	}
	if p+2 > len(body) {
		return nil, false
	}
	end := p + 2 + int(binary.BigEndian.Uint16(body[p:]))
	p += 2
	if end > len(body) {
		end = len(body)
	}
	for p+4 <= end {
		typ := binary.BigEndian.Uint16(body[p:])
		n := int(binary.BigEndian.Uint16(body[p+2:]))
		p += 4
		if p+n > end {
			return nil, false
		}
		if typ == AppIDExtension {
			// opaque ApplicationID<1..2^8-1>
			if n < 1 || int(body[p])+1 > n {
				return nil, false
			}
			return body[p+1 : p+1+int(body[p])], true
		}
		p += n
	}
	return nil, false
}
