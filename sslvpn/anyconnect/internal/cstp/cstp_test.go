package cstp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  Type
		n    int
		want []byte
	}{
		{"data", Data, 1400, []byte{'S', 'T', 'F', 1, 0x05, 0x78, 0x00, 0}},
		{"dpd request", DPDRequest, 0, []byte{'S', 'T', 'F', 1, 0, 0, 0x03, 0}},
		{"keepalive", Keepalive, 0, []byte{'S', 'T', 'F', 1, 0, 0, 0x07, 0}},
		{"largest", Data, MaxPayload, []byte{'S', 'T', 'F', 1, 0x40, 0x00, 0x00, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b [HeaderLen]byte
			if err := PutHeader(b[:], tc.typ, tc.n); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b[:], tc.want) {
				t.Fatalf("header (-got +want):\n-% x\n+% x", b, tc.want)
			}
			typ, n, err := ParseHeader(b[:])
			if err != nil || typ != tc.typ || n != tc.n {
				t.Fatalf("ParseHeader = %v, %d, %v; want %v, %d", typ, n, err, tc.typ, tc.n)
			}
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"short", []byte("STF\x01\x00"), ErrShortBuffer},
		{"magic", []byte("STX\x01\x00\x00\x00\x00"), ErrBadMagic},
		{"version", []byte("STF\x02\x00\x00\x00\x00"), ErrBadMagic},
		{"reserved byte", []byte("STF\x01\x00\x00\x00\x01"), ErrBadMagic},
		{"too long", []byte("STF\x01\x40\x01\x00\x00"), ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseHeader(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := PutHeader(make([]byte, 8), Data, MaxPayload+1); !errors.Is(err, ErrTooLong) {
		t.Errorf("PutHeader too long: %v", err)
	}
	if err := PutHeader(make([]byte, 7), Data, 1); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("PutHeader short: %v", err)
	}
}

func TestFrameReader(t *testing.T) {
	var stream []byte
	stream, _ = AppendFrame(stream, Data, []byte("packet one"))
	stream, _ = AppendFrame(stream, DPDRequest, nil)
	stream, _ = AppendFrame(stream, Disconnect, []byte("\xb0bye"))
	want := []struct {
		typ Type
		p   string
	}{{Data, "packet one"}, {DPDRequest, ""}, {Disconnect, "\xb0bye"}}
	// One byte at a time: frames never depend on how TLS records or reads cut the stream.
	fr := NewFrameReader(bufio.NewReader(iotest.OneByteReader(bytes.NewReader(stream))))
	for i, w := range want {
		typ, p, err := fr.ReadFrame()
		if err != nil || typ != w.typ || string(p) != w.p {
			t.Fatalf("frame %d = %v %q %v, want %v %q", i, typ, p, err, w.typ, w.p)
		}
	}
	if _, _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
	// A stream cut inside a frame is an unexpected EOF.
	fr = NewFrameReader(bufio.NewReader(bytes.NewReader(stream[:12])))
	if _, _, err := fr.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut frame: %v", err)
	}
}

func TestParseDTLS(t *testing.T) {
	typ, p, err := ParseDTLS([]byte{byte(DPDRequest), 1, 2})
	if err != nil || typ != DPDRequest || !bytes.Equal(p, []byte{1, 2}) {
		t.Fatalf("ParseDTLS = %v %v %v", typ, p, err)
	}
	if _, _, err := ParseDTLS(nil); !errors.Is(err, ErrShortBuffer) {
		t.Fatal(err)
	}
}

// loopReader replays the same bytes forever, without allocating.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func TestZeroAllocs(t *testing.T) {
	buf := make([]byte, HeaderLen+1400)
	if n := testing.AllocsPerRun(1000, func() {
		_ = PutHeader(buf, Data, 1400)
		_, _, _ = ParseHeader(buf)
		_, _, _ = ParseDTLS(buf[7:])
	}); n != 0 {
		t.Errorf("encode/decode: %v allocations per frame", n)
	}
	frame, _ := AppendFrame(nil, Data, make([]byte, 1400))
	fr := NewFrameReader(bufio.NewReaderSize(&loopReader{b: frame}, 32<<10))
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("FrameReader: %v allocations per frame", n)
	}
}

func FuzzFrames(f *testing.F) {
	f.Add([]byte("STF\x01\x00\x00\x03\x00STF\x01\x00\x02\x00\x00hi"))
	f.Add([]byte("STF\x01\x00\x04\x05\x00\xb0bye"))
	f.Add([]byte("STF\x01\xff\xff\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)))
		var again []byte
		var frames int
		for {
			typ, p, err := fr.ReadFrame()
			if err != nil {
				break
			}
			frames++
			var err2 error
			if again, err2 = AppendFrame(again, typ, p); err2 != nil {
				t.Fatalf("re-encoding a parsed frame: %v", err2)
			}
		}
		// What was read re-encodes to the same bytes, and reads back as the same frames.
		if !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("re-encoded frames differ from the input")
		}
		fr = NewFrameReader(bufio.NewReader(bytes.NewReader(again)))
		for i := 0; i < frames; i++ {
			if _, _, err := fr.ReadFrame(); err != nil {
				t.Fatalf("frame %d of the re-encoding: %v", i, err)
			}
		}
	})
}

func BenchmarkEncodeDecode(b *testing.B) {
	buf := make([]byte, HeaderLen+1400)
	b.ReportAllocs()
	for b.Loop() {
		_ = PutHeader(buf, Data, 1400)
		_, _, _ = ParseHeader(buf)
	}
}

func BenchmarkFrameReader(b *testing.B) {
	frame, _ := AppendFrame(nil, Data, make([]byte, 1400))
	fr := NewFrameReader(bufio.NewReaderSize(&loopReader{b: frame}, 32<<10))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}
