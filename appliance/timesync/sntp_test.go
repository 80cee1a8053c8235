package timesync

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// reply builds a server answer to a request stamp.
func reply(stamp uint64, stratum byte, li byte, rx, tx time.Time) []byte {
	b := make([]byte, packetLen)
	b[0] = li<<6 | 4<<3 | 4
	b[1] = stratum
	copy(b[12:16], "GPS\x00")
	binary.BigEndian.PutUint64(b[24:], stamp)
	binary.BigEndian.PutUint64(b[32:], toNTP(rx))
	binary.BigEndian.PutUint64(b[40:], toNTP(tx))
	return b
}

func TestTimestampRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 23, 9, 0, 0, 123456789, time.UTC),
		time.Date(2036, 2, 7, 6, 28, 20, 0, time.UTC), // NTP era 1 begins
		time.Date(2040, 1, 1, 0, 0, 0, 500000000, time.UTC),
	} {
		back := fromNTP(toNTP(tm), tm)
		if d := back.Sub(tm).Abs(); d > time.Microsecond {
			t.Errorf("%v came back as %v", tm, back)
		}
	}
}

func TestMeasure(t *testing.T) {
	t1 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	// The server is 5 s ahead; 10 ms each way; 1 ms inside the server.
	r := Reply{Receive: t1.Add(5*time.Second + 10*time.Millisecond), Transmit: t1.Add(5*time.Second + 11*time.Millisecond)}
	t4 := t1.Add(21 * time.Millisecond)
	off, delay := Measure(t1, r, t4)
	if off != 5*time.Second || delay != 20*time.Millisecond {
		t.Fatalf("offset %v delay %v, want 5s and 20ms", off, delay)
	}
}

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	_, stamp := Request(now)
	good := reply(stamp, 2, 0, now.Add(time.Second), now.Add(time.Second))
	if r, err := Parse(good, stamp, now); err != nil || r.Stratum != 2 || !r.Receive.Equal(now.Add(time.Second)) {
		t.Fatalf("Parse(good) = %+v, %v", r, err)
	}
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"short", good[:47], ErrShort},
		{"client mode", func() []byte { b := append([]byte(nil), good...); b[0] = 4<<3 | 3; return b }(), ErrNotServer},
		{"other request", reply(stamp+1, 2, 0, now, now), ErrWrongRequest},
		{"kiss of death", reply(stamp, 0, 0, now, now), ErrKissOfDeath},
		{"unsynchronized", reply(stamp, 2, 3, now, now), ErrUnsynced},
		{"stratum 16", reply(stamp, 16, 0, now, now), ErrUnsynced},
	}
	for _, tt := range tests {
		if _, err := Parse(tt.pkt, stamp, now); !errors.Is(err, tt.want) {
			t.Errorf("%s: Parse = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	_, stamp := Request(now)
	f.Add(reply(stamp, 2, 0, now, now), stamp)
	f.Add(reply(stamp, 0, 0, now, now), stamp)
	f.Add([]byte{0x24}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, stamp uint64) {
		r, err := Parse(b, stamp, now)
		if err == nil && (r.Stratum < 1 || r.Stratum > 15) {
			t.Fatalf("accepted stratum %d", r.Stratum)
		}
	})
}
