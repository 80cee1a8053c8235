package reliable

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"toride/sslvpn/openvpn/internal/wire"
)

func TestSenderWindowAndBackoff(t *testing.T) {
	s := NewSender(2, time.Second, 4*time.Second)
	t0 := time.Unix(1000, 0)
	if _, err := s.Push(wire.ControlV1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(wire.ControlV1, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(wire.ControlV1, []byte("c")); err != ErrWindowFull {
		t.Fatalf("third push: %v, want ErrWindowFull", err)
	}
	var sent []string
	due := func(now time.Time) []string {
		sent = sent[:0]
		s.Due(now, func(m Message) { sent = append(sent, fmt.Sprintf("%d:%s", m.ID, m.Payload)) })
		return sent
	}
	for _, step := range []struct {
		at   time.Duration
		ack  int
		want string
	}{
		{0, -1, "[0:a 1:b]"},
		{500 * time.Millisecond, -1, "[]"},
		{time.Second, -1, "[0:a 1:b]"},  // first retransmission after 1s
		{2 * time.Second, -1, "[]"},     // back-off: next after 2s more
		{3 * time.Second, 0, "[1:b]"},   // 0 acked
		{7 * time.Second, -1, "[1:b]"},  // 4s cap
		{11 * time.Second, -1, "[1:b]"}, // still 4s
		{11*time.Second + 1, 1, "[]"},
	} {
		if step.ack >= 0 {
			if !s.Ack(uint32(step.ack)) {
				t.Fatalf("ack %d not pending", step.ack)
			}
		}
		if got := fmt.Sprint(due(t0.Add(step.at))); got != step.want {
			t.Errorf("at %v: sent %s, want %s", step.at, got, step.want)
		}
	}
	if !s.Empty() || s.Ack(1) {
		t.Error("sender not empty or double ack accepted")
	}
}

func TestSenderFastRetransmit(t *testing.T) {
	s := NewSender(6, time.Second, 8*time.Second)
	t0 := time.Unix(0, 0)
	for i := 0; i < 5; i++ {
		s.Push(wire.ControlV1, []byte{byte(i)})
	}
	s.Due(t0, func(Message) {})
	s.Ack(1)
	s.Ack(2)
	var got []uint32
	s.Due(t0.Add(time.Millisecond), func(m Message) { got = append(got, m.ID) })
	if len(got) != 0 {
		t.Fatalf("retransmitted %v after two later acks", got)
	}
	s.Ack(3)
	if d, ok := s.NextDeadline(); !ok || !d.IsZero() {
		t.Errorf("NextDeadline = %v %v, want now", d, ok)
	}
	s.Due(t0.Add(2*time.Millisecond), func(m Message) { got = append(got, m.ID) })
	if fmt.Sprint(got) != "[0]" {
		t.Errorf("fast retransmit sent %v, want [0]", got)
	}
}

func TestReceiver(t *testing.T) {
	r := NewReceiver(4)
	type step struct {
		id      uint32
		verdict Verdict
		deliver string
	}
	for i, st := range []step{
		{1, Accepted, ""},
		{3, Accepted, ""},
		{4, OutOfWindow, ""}, // 0..3 is the window
		{1, Duplicate, ""},
		{0, Accepted, "0 1"},
		{2, Accepted, "2 3"},
		{0, Duplicate, ""},
		{7, Accepted, ""},
		{8, OutOfWindow, ""},
	} {
		if v := r.Receive(st.id, wire.ControlV1, []byte(fmt.Sprint(st.id))); v != st.verdict {
			t.Errorf("step %d: Receive(%d) = %v, want %v", i, st.id, v, st.verdict)
		}
		var got []string
		for {
			m, ok := r.Next()
			if !ok {
				break
			}
			got = append(got, string(m.Payload))
		}
		if g := fmt.Sprint(got); g != fmt.Sprint(splitOrNil(st.deliver)) {
			t.Errorf("step %d: delivered %v, want %q", i, got, st.deliver)
		}
	}
	acks := make([]uint32, 16)
	n := r.TakeAcks(acks)
	if got := fmt.Sprint(acks[:n]); got != "[1 3 0 2 7]" {
		t.Errorf("acks owed %s, want [1 3 0 2 7] (duplicates acked once, out-of-window never)", got)
	}
}

func splitOrNil(s string) []string {
	if s == "" {
		return nil
	}
	return bytes2strings(bytes.Fields([]byte(s)))
}

func bytes2strings(b [][]byte) []string {
	var out []string
	for _, x := range b {
		out = append(out, string(x))
	}
	return out
}

// TestLossyLink runs two endpoints over a simulated link that loses, duplicates and reorders packets, on a fake
// clock, and checks that every message arrives once and in order.
func TestLossyLink(t *testing.T) {
	for _, tc := range []struct {
		name               string
		loss, dup, reorder float64
		seed               uint64
	}{
		{"clean", 0, 0, 0, 1},
		{"10% loss", 0.1, 0, 0, 2},
		{"30% loss", 0.3, 0, 0, 3},
		{"duplication", 0, 0.3, 0, 4},
		{"reordering", 0, 0, 0.4, 5},
		{"everything", 0.25, 0.2, 0.3, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(tc.seed, 99))
			const messages = 300
			now := time.Unix(0, 0)
			type pkt struct {
				at      time.Time
				id      uint32
				payload []byte
				acks    []uint32
			}
			var aToB, bToA []pkt
			send := NewSender(DefaultSendWindow, 200*time.Millisecond, 2*time.Second)
			recv := NewReceiver(DefaultRecvWindow)
			transmit := func(q *[]pkt, p pkt) {
				if rnd.Float64() < tc.loss {
					return
				}
				delay := time.Duration(5+rnd.IntN(10)) * time.Millisecond
				if rnd.Float64() < tc.reorder {
					delay += time.Duration(rnd.IntN(80)) * time.Millisecond
				}
				p.at = now.Add(delay)
				*q = append(*q, p)
				if rnd.Float64() < tc.dup {
					p.at = p.at.Add(time.Duration(rnd.IntN(30)) * time.Millisecond)
					*q = append(*q, p)
				}
			}
			var got [][]byte
			next := 0
			for step := 0; len(got) < messages; step++ {
				if step > 200000 {
					t.Fatalf("stuck after %d of %d messages", len(got), messages)
				}
				for next < messages && !send.Full() {
					send.Push(wire.ControlV1, []byte(fmt.Sprintf("m%04d", next)))
					next++
				}
				send.Due(now, func(m Message) {
					transmit(&aToB, pkt{id: m.ID, payload: append([]byte(nil), m.Payload...)})
				})
				// Deliver what is due, in arrival order.
				deliver := func(q *[]pkt, fn func(pkt)) {
					var keep []pkt
					for _, p := range *q {
						if !p.at.After(now) {
							fn(p)
						} else {
							keep = append(keep, p)
						}
					}
					*q = keep
				}
				deliver(&aToB, func(p pkt) {
					recv.Receive(p.id, wire.ControlV1, p.payload)
					for {
						m, ok := recv.Next()
						if !ok {
							break
						}
						got = append(got, m.Payload)
					}
				})
				for recv.PendingAcks() > 0 {
					acks := make([]uint32, wire.SendAcksMax)
					n := recv.TakeAcks(acks)
					transmit(&bToA, pkt{acks: acks[:n]})
				}
				deliver(&bToA, func(p pkt) {
					for _, a := range p.acks {
						send.Ack(a)
					}
				})
				now = now.Add(5 * time.Millisecond)
			}
			for i, m := range got {
				if want := fmt.Sprintf("m%04d", i); string(m) != want {
					t.Fatalf("message %d is %q, want %q", i, m, want)
				}
			}
			t.Logf("%d messages in %v simulated, %d retransmissions, %d duplicates received",
				messages, now.Sub(time.Unix(0, 0)), send.Retransmissions(), recv.Duplicates())
		})
	}
}
