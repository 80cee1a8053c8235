package openvpn

import (
	"sync/atomic"
	"time"

	"toride/sslvpn/internal/bufpool"
	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/wire"
)

// frameHeadroom is reserved before every outgoing packet for the TCP length prefix.
const frameHeadroom = 2

// payloadOff is where SendPacket copies a plaintext packet in a pool buffer: enough headroom for the largest
// data-channel overhead and the TCP length prefix.
const payloadOff = frameHeadroom + datachannel.Headroom

// MaxPacketSize is the largest IP packet SendPacket accepts.
const MaxPacketSize = bufpool.Size - payloadOff - datachannel.Tailroom

// keySet is the data path's view of a session's keys, replaced as a whole (copy-on-write) by the control loop and
// read lock-free per packet.
type keySet struct {
	rx    [8]*datachannel.Keys // by key id; Decrypt only from the session's receive goroutine
	tx    *datachannel.Keys    // Encrypt only from the session's writer goroutine
	txHdr wire.DataHeader
}

type uplinkRef struct{ u Uplink }

type sessionCounters struct {
	packetsIn, bytesIn, packetsOut, bytesOut, dropped, decryptErrors, renegotiations atomic.Uint64
}

// now is the session clock: monotonic nanoseconds since the server started, cheap enough per packet.
func (s *session) now() int64 { return int64(time.Since(s.srv.epoch)) }

// handleIncoming takes one packet from the transport's receive goroutine. pkt is only valid during the call:
// data packets are decrypted in place and handed to the uplink; control packets are copied to the control loop.
func (s *session) handleIncoming(pkt []byte) {
	if len(pkt) == 0 {
		return
	}
	op, _ := wire.SplitHeader(pkt[0])
	if op.IsData() {
		s.handleData(pkt)
		return
	}
	if !op.IsControl() {
		s.srv.stats.malformed.Add(1)
		return
	}
	c := append([]byte(nil), pkt...)
	select {
	case s.ctrlIn <- c:
	default:
		// The control loop is behind; the peer retransmits.
		s.srv.stats.controlDropped.Add(1)
	}
}

// handleData decrypts a data packet in place and delivers it. It reports whether the packet was authentic (the
// client's, and no replay), which lets a UDP client float. Receive goroutine only.
func (s *session) handleData(pkt []byte) bool {
	h, err := wire.ParseDataHeader(pkt)
	if err != nil {
		s.counters.decryptErrors.Add(1)
		return false
	}
	k := s.keys.Load().rx[h.KeyID]
	if k == nil {
		s.counters.dropped.Add(1)
		return false
	}
	plain, err := k.Decrypt(pkt, h.Len)
	if err != nil {
		s.counters.decryptErrors.Add(1)
		return false
	}
	s.lastRx.Store(s.now())
	switch datachannel.Classify(plain) {
	case datachannel.KindPing, datachannel.KindOCC:
		return true
	case datachannel.KindExit:
		s.requestClose(ErrClientExit)
		return true
	}
	up := s.uplink.Load()
	if up == nil {
		s.counters.dropped.Add(1)
		return true
	}
	if err := up.u.WritePacket(plain); err != nil {
		s.counters.dropped.Add(1)
		return true
	}
	s.counters.packetsIn.Add(1)
	s.counters.bytesIn.Add(uint64(len(plain)))
	return true
}

// flushUplink writes what the uplink holds of the session's packets (see Uplink.Flush).
func (s *session) flushUplink() {
	if up := s.uplink.Load(); up != nil {
		up.u.Flush()
	}
}

// SendPacket implements Session.
func (s *session) SendPacket(pkt []byte) bool {
	if len(pkt) == 0 || len(pkt) > MaxPacketSize {
		s.counters.dropped.Add(1)
		return false
	}
	s.txMu.RLock()
	defer s.txMu.RUnlock()
	if s.txClosed || s.keys.Load().tx == nil {
		s.counters.dropped.Add(1)
		return false
	}
	b := s.srv.pool.Get()
	if b == nil {
		s.counters.dropped.Add(1)
		return false
	}
	b.Off, b.N = payloadOff, copy(b.Data[payloadOff:], pkt)
	select {
	case s.txq <- b: // the writer owns b now
		return true
	default:
		s.srv.pool.Put(b)
		s.counters.dropped.Add(1)
		return false
	}
}

// txBatchLen is the most data packets the writer sends in one write (one sendmmsg for UDP, one writev for TCP).
const txBatchLen = 32

// txBatch is the writer's scratch for one batch: the buffers it holds and the frames sealed in them.
type txBatch struct {
	held   [txBatchLen]*bufpool.Buf
	frames [txBatchLen][]byte
}

// writeLoop is the session's only writer to the transport: control frames from the loop, data packets from
// SendPacket (encrypted here, in place, and sent in batches of what is queued) and keepalive pings.
func (s *session) writeLoop() {
	defer s.wg.Done()
	var ping bufpool.Buf
	for {
		select {
		case f := <-s.ctrlOut:
			s.tx.frames[0] = f
			if err := s.link.writeFrames(s.tx.frames[:1]); err != nil {
				s.linkFailed(err)
			}
		case b := <-s.txq:
			s.sendQueued(b)
		case <-s.pingReq:
			ping.Off, ping.N = payloadOff, copy(ping.Data[payloadOff:], datachannel.PingPayload[:])
			s.tx.held[0] = &ping
			s.sendData(s.tx.held[:1])
		case <-s.done:
			return
		}
	}
}

// sendQueued sends b and whatever else is queued, up to a batch, and returns the buffers to the pool. Writer
// goroutine only.
func (s *session) sendQueued(b *bufpool.Buf) {
	held := append(s.tx.held[:0], b)
fill:
	for len(held) < txBatchLen {
		select {
		case b := <-s.txq:
			held = append(held, b)
		default:
			break fill
		}
	}
	sent, bytes := s.sendData(held)
	s.counters.packetsOut.Add(uint64(sent))
	s.counters.bytesOut.Add(bytes)
	for i, b := range held {
		s.srv.pool.Put(b)
		held[i] = nil
	}
}

// sendData encrypts the payloads of bufs with the current key, in place, and writes them; it returns how many
// it sent and their plaintext bytes. Writer goroutine only.
func (s *session) sendData(bufs []*bufpool.Buf) (sent int, bytes uint64) {
	ks := s.keys.Load()
	if ks.tx == nil {
		s.counters.dropped.Add(uint64(len(bufs)))
		return 0, 0
	}
	frames := s.tx.frames[:0]
	for _, b := range bufs {
		pkt, err := ks.tx.Encrypt(b.Data[:], b.Off, b.N, ks.txHdr)
		if err != nil {
			s.counters.dropped.Add(1)
			continue
		}
		start := len(b.Data) - cap(pkt)
		frames = append(frames, b.Data[start-frameHeadroom:start+len(pkt)])
		bytes += uint64(b.N)
	}
	if len(frames) == 0 {
		return 0, 0
	}
	if err := s.link.writeFrames(frames); err != nil {
		s.linkFailed(err)
		return 0, 0
	}
	s.lastTx.Store(s.now())
	return len(frames), bytes
}

func (s *session) drainTx() {
	for {
		select {
		case b := <-s.txq:
			s.srv.pool.Put(b)
		default:
			return
		}
	}
}
