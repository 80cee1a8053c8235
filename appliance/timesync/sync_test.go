package timesync

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// aheadServer answers SNTP requests on loopback with a clock skewed by ahead.
func aheadServer(t *testing.T, ahead time.Duration) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 128)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < packetLen {
				continue
			}
			now := time.Now().Add(ahead)
			stamp := binary.BigEndian.Uint64(buf[40:])
			_, _ = pc.WriteTo(reply(stamp, 3, 0, now, now), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

type recordingClock struct {
	mu          sync.Mutex
	steps, slew []time.Duration
}

func (c *recordingClock) Now() time.Time { return time.Now() }
func (c *recordingClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, d)
	return nil
}
func (c *recordingClock) Slew(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slew = append(c.slew, d)
	return nil
}

func TestSyncerStepsALargeOffsetAndSlewsASmallOne(t *testing.T) {
	for _, tt := range []struct {
		ahead    time.Duration
		wantStep bool
	}{{5 * time.Second, true}, {30 * time.Millisecond, false}} {
		clock := &recordingClock{}
		statuses := make(chan Status, 4)
		s := New(Options{Clock: clock, Port: aheadServer(t, tt.ahead), OnStatus: func(st Status) { statuses <- st }})
		s.SetServers([]string{"127.0.0.1"})
		var st Status
		for !st.Synchronized {
			select {
			case st = <-statuses:
			case <-time.After(5 * time.Second):
				t.Fatal("no poll within 5 s")
			}
		}
		s.Close()
		if !st.Synchronized || st.OffsetMs < float64(tt.ahead.Milliseconds())-20 || st.OffsetMs > float64(tt.ahead.Milliseconds())+20 {
			t.Fatalf("ahead %v: status %+v", tt.ahead, st)
		}
		clock.mu.Lock()
		stepped, slewed := len(clock.steps) == 1, len(clock.slew) == 1
		clock.mu.Unlock()
		if stepped != tt.wantStep || slewed == tt.wantStep {
			t.Fatalf("ahead %v: steps %v slews %v", tt.ahead, clock.steps, clock.slew)
		}
	}
}

func TestSyncerMeasuresOnlyWithoutAClock(t *testing.T) {
	statuses := make(chan Status, 4)
	s := New(Options{Port: aheadServer(t, time.Minute), OnStatus: func(st Status) { statuses <- st }})
	defer s.Close()
	s.SetServers([]string{"127.0.0.1"})
	var st Status
	for !st.Synchronized {
		select {
		case st = <-statuses:
		case <-time.After(5 * time.Second):
			t.Fatal("no poll within 5 s")
		}
	}
	if st.ManagesClock || st.OffsetMs < 59000 {
		t.Fatalf("status %+v", st)
	}
}
