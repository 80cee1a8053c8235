// Package reliable is OpenVPN's control-channel reliability layer (reliable.c): a sender with a bounded window of
// unacknowledged messages retransmitted with exponential back-off (and early, after enough acks for later
// messages), and a receiver with a bounded window that delivers messages in order, drops duplicates and
// remembers which message ids to acknowledge.
//
// The types hold no goroutines and no clock: callers pass the current time, so tests drive them with a fake
// clock. Neither Sender nor Receiver is safe for concurrent use; each key state's control loop owns one of each.
package reliable

import (
	"errors"
	"time"

	"toride/sslvpn/openvpn/internal/wire"
)

// ErrWindowFull is returned by Sender.Push when the window holds the maximum of unacknowledged messages.
var ErrWindowFull = errors.New("reliable: send window full")

// Defaults from OpenVPN (TLS_RELIABLE_N_SEND_BUFFERS, TLS_RELIABLE_N_REC_BUFFERS, N_ACK_RETRANSMIT).
const (
	DefaultSendWindow  = 6
	DefaultRecvWindow  = 12
	fastRetransmitAcks = 3
	// maxPendingAcks bounds the ids waiting to be acknowledged; a peer that makes us owe more is misbehaving,
	// and the oldest owed acks are forgotten (the peer retransmits and is acked again).
	maxPendingAcks = 64
)

// Message is one reliable control message.
type Message struct {
	ID      uint32
	Opcode  wire.Opcode
	Payload []byte
}

type outgoing struct {
	Message
	sent      bool
	nextRetry time.Time
	rto       time.Duration
	laterAcks int // acks seen for later messages since the last transmission
}

// Sender numbers outgoing messages, keeps them until acknowledged and says when to (re)transmit each.
// The zero value is not usable; use NewSender.
type Sender struct {
	window     int
	initialRTO time.Duration
	maxRTO     time.Duration
	nextID     uint32
	pending    []*outgoing // ordered by id
	retransmit uint64
}

// NewSender returns a sender whose first message id is 0.
func NewSender(window int, initialRTO, maxRTO time.Duration) *Sender {
	if window <= 0 {
		window = DefaultSendWindow
	}
	if initialRTO <= 0 {
		initialRTO = time.Second
	}
	if maxRTO < initialRTO {
		maxRTO = initialRTO
	}
	return &Sender{window: window, initialRTO: initialRTO, maxRTO: maxRTO}
}

// Full reports whether Push would fail.
func (s *Sender) Full() bool { return len(s.pending) >= s.window }

// Empty reports whether every pushed message has been acknowledged.
func (s *Sender) Empty() bool { return len(s.pending) == 0 }

// InFlight is the number of unacknowledged messages.
func (s *Sender) InFlight() int { return len(s.pending) }

// Retransmissions counts messages sent more than once.
func (s *Sender) Retransmissions() uint64 { return s.retransmit }

// Push queues a message for transmission and returns its id. The sender keeps payload until it is acknowledged;
// the caller must not modify it afterwards.
func (s *Sender) Push(op wire.Opcode, payload []byte) (uint32, error) {
	if s.Full() {
		return 0, ErrWindowFull
	}
	id := s.nextID
	s.nextID++
	s.pending = append(s.pending, &outgoing{Message: Message{ID: id, Opcode: op, Payload: payload}, rto: s.initialRTO})
	return id, nil
}

// Ack removes an acknowledged message and reports whether it was pending. Acks for later messages count
// towards an early retransmission of the earlier ones still pending.
func (s *Sender) Ack(id uint32) bool {
	for i, o := range s.pending {
		if o.ID == id {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			for _, earlier := range s.pending[:i] {
				earlier.laterAcks++
			}
			return true
		}
	}
	return false
}

// Due calls send for every message that must go out now: never sent, retransmission timer expired, or enough
// later acks seen. It then re-arms their timers with exponential back-off. send must not retain the message's
// payload after it returns.
func (s *Sender) Due(now time.Time, send func(Message)) {
	for _, o := range s.pending {
		switch {
		case !o.sent:
			o.sent = true
		case !now.Before(o.nextRetry):
			o.rto *= 2
			if o.rto > s.maxRTO {
				o.rto = s.maxRTO
			}
			s.retransmit++
		case o.laterAcks >= fastRetransmitAcks:
			s.retransmit++
		default:
			continue
		}
		o.laterAcks = 0
		o.nextRetry = now.Add(o.rto)
		send(o.Message)
	}
}

// NextDeadline returns when Due next has something to send, and false if nothing is pending.
func (s *Sender) NextDeadline() (time.Time, bool) {
	var t time.Time
	for _, o := range s.pending {
		if !o.sent || o.laterAcks >= fastRetransmitAcks {
			return time.Time{}, true // now
		}
		if t.IsZero() || o.nextRetry.Before(t) {
			t = o.nextRetry
		}
	}
	return t, !t.IsZero()
}

// Verdict says what the receiver did with a message.
type Verdict int

const (
	// Accepted: a new message within the window, stored for in-order delivery and to be acknowledged.
	Accepted Verdict = iota
	// Duplicate: already received (or delivered); acknowledged again, not delivered again.
	Duplicate
	// OutOfWindow: too far ahead; dropped without an ack so the peer retransmits it later.
	OutOfWindow
)

// Receiver reorders incoming messages and tracks acknowledgements owed. The zero value is not usable; use
// NewReceiver.
type Receiver struct {
	next  uint32     // next id to deliver
	slots []*Message // slots[id % len] holds a received, undelivered message
	acks  []uint32   // ids owed an ack, oldest first
	dupes uint64
}

// NewReceiver returns a receiver expecting message id 0 first.
func NewReceiver(window int) *Receiver {
	if window <= 0 {
		window = DefaultRecvWindow
	}
	return &Receiver{slots: make([]*Message, window)}
}

// Duplicates counts duplicate messages received.
func (r *Receiver) Duplicates() uint64 { return r.dupes }

// Receive files an incoming message. The receiver copies payload if it keeps it.
func (r *Receiver) Receive(id uint32, op wire.Opcode, payload []byte) Verdict {
	// Ids are compared in 32-bit serial arithmetic so that nothing breaks near the wrap.
	d := id - r.next
	if int32(d) < 0 {
		r.owe(id)
		r.dupes++
		return Duplicate
	}
	if d >= uint32(len(r.slots)) {
		return OutOfWindow
	}
	slot := &r.slots[id%uint32(len(r.slots))]
	if *slot != nil {
		r.owe(id)
		r.dupes++
		return Duplicate
	}
	*slot = &Message{ID: id, Opcode: op, Payload: append([]byte(nil), payload...)}
	r.owe(id)
	return Accepted
}

// Next pops the next in-order message, if it has arrived. The caller owns the returned payload.
func (r *Receiver) Next() (Message, bool) {
	slot := &r.slots[r.next%uint32(len(r.slots))]
	if *slot == nil || (*slot).ID != r.next {
		return Message{}, false
	}
	m := **slot
	*slot = nil
	r.next++
	return m, true
}

// NextID is the id of the next message to deliver.
func (r *Receiver) NextID() uint32 { return r.next }

func (r *Receiver) owe(id uint32) {
	for _, a := range r.acks {
		if a == id {
			return
		}
	}
	if len(r.acks) >= maxPendingAcks {
		r.acks = append(r.acks[:0], r.acks[1:]...)
	}
	r.acks = append(r.acks, id)
}

// PendingAcks is the number of ids owed an acknowledgement.
func (r *Receiver) PendingAcks() int { return len(r.acks) }

// TakeAcks moves up to max owed ids (oldest first) into dst and returns the number moved.
func (r *Receiver) TakeAcks(dst []uint32) int {
	n := copy(dst, r.acks)
	r.acks = append(r.acks[:0], r.acks[n:]...)
	return n
}
