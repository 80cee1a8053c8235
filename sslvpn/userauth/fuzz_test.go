package userauth

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// FuzzCheck: whatever a client sends as user name, password, one-time password and source, Check never panics,
// accepts only the right factors, fails only with ErrLoginFailed, and keeps its tables within their bound.
func FuzzCheck(f *testing.F) {
	f.Add("alice", "s3cret", "123456", []byte{192, 0, 2, 1}, true, true)
	f.Add("", "", "", []byte{}, false, false)
	f.Add("mallory\x00\xff", "s3cret", " 287082 ", []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, true, false)
	f.Add("alice", "", "0000000", []byte{10, 0, 0, 1}, false, true)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	// Every attempt a minute after the one before: lockouts end and windows close while the fuzzer runs.
	var minutes atomic.Int64
	c := New(Options{Now: func() time.Time { return time.Unix(59+60*minutes.Add(1), 0) }, MaxTracked: 8, HashWait: time.Second})
	c.cost.Store(int32(bcrypt.MinCost))
	f.Fuzz(func(t *testing.T, user, password, code string, src []byte, withPassword, withCode bool) {
		addr, _ := netip.AddrFromSlice(src)
		a := Attempt{User: user, Source: addr, CheckPassword: withPassword, Hash: string(hash), Password: password,
			CheckCode: withCode, Secret: secret, Code: code}
		err := c.Check(context.Background(), a)
		if err != nil && !errors.Is(err, ErrLoginFailed) {
			t.Fatalf("an error that is not ErrLoginFailed: %v", err)
		}
		if err == nil && ((withPassword && password != "s3cret") || (withCode && len(code) < 6)) {
			t.Fatalf("accepted %+v", a)
		}
		if n := c.Counters().Tracked; n > 4*8 {
			t.Fatalf("%d entries tracked, more than 4 tables of 8", n)
		}
	})
}
