package openvpn

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/wire"
)

// FuzzStaticChallenge: SCRV1 strings; what parses formats back to a string that parses the same.
func FuzzStaticChallenge(f *testing.F) {
	f.Add("SCRV1::MTIzNDU2")
	f.Add("SCRV1:cGlu:OTg3NjU0")
	f.Fuzz(func(t *testing.T, s string) {
		p, r, err := ParseStaticChallenge(s)
		if err != nil {
			return
		}
		p2, r2, err := ParseStaticChallenge(FormatStaticChallenge(p, r))
		if err != nil || p2 != p || r2 != r {
			t.Fatalf("round trip of %q: %q %q %v", s, p2, r2, err)
		}
	})
}

// FuzzSession feeds packets, as the network would, into a session that has a data key and a first key state:
// nothing may panic, and the session must still shut down cleanly.
func FuzzSession(f *testing.F) {
	sid := wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}
	f.Add((&wire.ControlPacket{Opcode: wire.ControlHardResetClientV2, SessionID: sid}).Append(nil))
	f.Add((&wire.ControlPacket{Opcode: wire.ControlV1, SessionID: sid, MessageID: 1, Payload: []byte{0x16, 3, 1}}).Append(nil))
	f.Add([]byte{0x48, 0, 0, 5, 0, 0, 0, 1})
	tlsCfg := selfSigned(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		srv, err := NewServer(Config{TLS: tlsCfg}, nopBackend{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := newSession(srv, UDP, netip.MustParseAddrPort("192.0.2.1:1"), &discardLink{}, sid, 5)
		if err != nil {
			t.Fatal(err)
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		now := time.Now()
		s.started = now
		c, _ := datachannel.LookupCipher("AES-256-GCM")
		var km keymethod.KeyMaterial
		k, _ := datachannel.New(c, datachannel.Digest{}, &km, true)
		s.keys.Store(&keySet{rx: [8]*datachannel.Keys{0: k}, tx: k, txHdr: wire.NewDataHeader(0, 5)})
		s.uplink.Store(&uplinkRef{uplinkFunc(func([]byte) error { return nil })})
		reset := (&wire.ControlPacket{Opcode: wire.ControlHardResetClientV2, SessionID: sid}).Append(nil)
		s.handleIncoming(reset)
		s.handleIncoming(pkt)
		for i := 0; i < 2; i++ {
			select {
			case raw := <-s.ctrlIn:
				s.onControl(raw, now)
			default:
			}
			if s.terminated {
				break
			}
			s.flush(now)
			s.onTimers(now)
		}
		s.terminate(errors.New("fuzz done"))
		s.wg.Wait()
	})
}
