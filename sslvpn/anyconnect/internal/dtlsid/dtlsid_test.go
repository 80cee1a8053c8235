package dtlsid

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// makeHello builds a DTLS 1.2 ClientHello datagram with a session id, and the application id extension if ext is
// not nil.
func makeHello(sid, ext []byte, epoch uint16, fragOff int) []byte {
	var body []byte
	body = append(body, 0xfe, 0xfd)
	body = append(body, make([]byte, 32)...) // random
	body = append(body, byte(len(sid)))
	body = append(body, sid...)
	body = append(body, 0)                         // cookie
	body = append(body, 0, 4, 0xc0, 0xa4, 0, 0xa8) // cipher suites
	body = append(body, 1, 0)                      // compression
	var exts []byte
	exts = append(exts, 0xff, 0x01, 0, 1, 0) // renegotiation_info
	if ext != nil {
		exts = binary.BigEndian.AppendUint16(exts, AppIDExtension)
		exts = binary.BigEndian.AppendUint16(exts, uint16(len(ext)+1))
		exts = append(exts, byte(len(ext)))
		exts = append(exts, ext...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	hs := []byte{1, 0, byte(len(body) >> 8), byte(len(body)), 0, 0, 0, byte(fragOff >> 8), byte(fragOff), 0, byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := []byte{22, 0xfe, 0xff, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 0}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(hs)))
	return append(rec, hs...)
}

func TestAppID(t *testing.T) {
	id := bytes.Repeat([]byte{0xab}, 32)
	other := bytes.Repeat([]byte{0xcd}, 32)
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
	}{
		{"session id", makeHello(id, nil, 0, 0), id},
		{"extension wins", makeHello(other, id, 0, 0), id},
		{"empty session id", makeHello(nil, nil, 0, 0), nil},
		{"not epoch 0", makeHello(id, nil, 1, 0), nil},
		{"later fragment", makeHello(id, nil, 0, 10), nil},
		{"application data", append([]byte{23}, makeHello(id, nil, 0, 0)[1:]...), nil},
		{"truncated", makeHello(id, nil, 0, 0)[:40], nil},
		{"empty", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := AppID(tc.in)
			if ok != (tc.want != nil) || !bytes.Equal(got, tc.want) {
				t.Fatalf("AppID = %x, %v; want %x", got, ok, tc.want)
			}
		})
	}
	if !IsClientHello(makeHello(id, nil, 0, 0)) || IsClientHello(makeHello(id, nil, 2, 0)) {
		t.Error("IsClientHello")
	}
}

func TestZeroAllocs(t *testing.T) {
	b := makeHello(bytes.Repeat([]byte{1}, 32), nil, 0, 0)
	if n := testing.AllocsPerRun(1000, func() { AppID(b) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzAppID(f *testing.F) {
	f.Add(makeHello(bytes.Repeat([]byte{0xab}, 32), nil, 0, 0))
	f.Add(makeHello(bytes.Repeat([]byte{0xab}, 32), []byte{1, 2, 3}, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ok := AppID(b)
		if ok && (len(id) == 0 || len(id) > 255 || !IsClientHello(b)) {
			t.Fatalf("AppID = %x on a datagram IsClientHello refuses or with a bad length", id)
		}
	})
}
