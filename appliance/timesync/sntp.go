// Package timesync keeps the appliance's clock honest with SNTP (RFC 4330) against the configured NTP servers.
// TOTP codes and certificate checks depend on the clock: a box whose clock is off refuses good clients. It
// always measures the offset and reports it; it corrects the clock only when it owns it (the appliance image),
// never on a development machine, where the clock belongs to the host.
package timesync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Errors of the packet parser.
var (
	ErrShort        = errors.New("sntp: reply shorter than 48 bytes")
	ErrNotServer    = errors.New("sntp: reply is not from a server (mode 4)")
	ErrUnsynced     = errors.New("sntp: server is not synchronized")
	ErrKissOfDeath  = errors.New("sntp: server sent a kiss-o'-death")
	ErrWrongRequest = errors.New("sntp: reply does not answer our request")
)

const packetLen = 48

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const ntpEpochOffset = 2208988800

// toNTP converts a time to a 64-bit NTP timestamp.
func toNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// fromNTP converts a 64-bit NTP timestamp to a time, in the era nearest to now (RFC 4330 §3, era wrap in 2036).
func fromNTP(ts uint64, near time.Time) time.Time {
	secs := int64(ts >> 32)
	nanos := int64((ts & 0xffffffff) * 1e9 >> 32)
	t := time.Unix(secs-ntpEpochOffset, nanos)
	const era = int64(1) << 32
	for t.Sub(near) > time.Duration(era/2)*time.Second {
		t = t.Add(-time.Duration(era) * time.Second)
	}
	for near.Sub(t) > time.Duration(era/2)*time.Second {
		t = t.Add(time.Duration(era) * time.Second)
	}
	return t
}

// Request builds a client request whose transmit timestamp is sent; the reply must echo it.
func Request(sent time.Time) (pkt [packetLen]byte, stamp uint64) {
	pkt[0] = 0<<6 | 4<<3 | 3 // no leap warning, version 4, mode 3 (client)
	stamp = toNTP(sent)
	binary.BigEndian.PutUint64(pkt[40:], stamp)
	return pkt, stamp
}

// Reply is what a server's answer says.
type Reply struct {
	Stratum  int
	RefID    [4]byte
	Receive  time.Time // server time when the request arrived (t2)
	Transmit time.Time // server time when the reply left (t3)
}

// Parse checks a server reply against the request's transmit stamp and decodes it. It never panics.
func Parse(b []byte, stamp uint64, near time.Time) (Reply, error) {
	if len(b) < packetLen {
		return Reply{}, ErrShort
	}
	li, mode := b[0]>>6, b[0]&7
	if mode != 4 {
		return Reply{}, fmt.Errorf("%w: mode %d", ErrNotServer, mode)
	}
	if binary.BigEndian.Uint64(b[24:]) != stamp {
		return Reply{}, ErrWrongRequest
	}
	r := Reply{Stratum: int(b[1])}
	copy(r.RefID[:], b[12:16])
	if r.Stratum == 0 {
		return r, fmt.Errorf("%w: %q", ErrKissOfDeath, r.RefID[:])
	}
	if li == 3 || r.Stratum > 15 {
		return r, ErrUnsynced
	}
	rx, tx := binary.BigEndian.Uint64(b[32:]), binary.BigEndian.Uint64(b[40:])
	if rx == 0 || tx == 0 {
		return r, ErrUnsynced
	}
	r.Receive, r.Transmit = fromNTP(rx, near), fromNTP(tx, near)
	return r, nil
}

// Measure computes the clock offset (server minus local) and the round-trip delay from the four times of an
// exchange: t1 request sent (local), t2 received (server), t3 reply sent (server), t4 reply received (local).
func Measure(t1 time.Time, r Reply, t4 time.Time) (offset, delay time.Duration) {
	offset = (r.Receive.Sub(t1) + r.Transmit.Sub(t4)) / 2
	delay = t4.Sub(t1) - r.Transmit.Sub(r.Receive)
	return offset, max(delay, 0)
}
