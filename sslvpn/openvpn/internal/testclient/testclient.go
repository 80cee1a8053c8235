// Package testclient is a minimal OpenVPN client built from the engine's own layers, for in-process tests of the
// server: over a TCP stream or a connected UDP socket it does the hard reset, TLS, key-method 2, PUSH_REQUEST,
// data-channel keys (PRF or tls-ekm as pushed), data packets, pings, renegotiation (soft reset) and
// explicit-exit-notify. It is test code: simple rather than fast.
//
// A Client is safe for concurrent use. Its goroutines end when Close returns.
package testclient

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/push"
	"toride/sslvpn/openvpn/internal/reliable"
	"toride/sslvpn/openvpn/internal/tlscrypt"
	"toride/sslvpn/openvpn/internal/tlspipe"
	"toride/sslvpn/openvpn/internal/wire"
)

// Config describes the client.
type Config struct {
	TLS      *tls.Config
	UDP      bool   // conn is a connected UDP socket (else a TCP stream)
	Ciphers  string // IV_CIPHERS, default "AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305"
	Proto    uint32 // IV_PROTO, default data-v2, tls-ekm, request-push, cc-exit
	Options  string // OCC options string, default a 2.6-like one
	Username string
	Password string
	Auth     string // HMAC digest for CBC, default SHA1
	TLSCrypt *tlscrypt.Key
	RTO      time.Duration // control retransmission timeout, default 300ms
}

// Client is one connection to a server.
type Client struct {
	cfg  Config
	conn net.Conn
	tc   *tlscrypt.Context

	in       chan []byte
	events   chan any
	wake     chan struct{}
	cmds     chan func()
	done     chan struct{}
	closeErr error
	wg       sync.WaitGroup
	once     sync.Once

	// Packets receives decrypted IP packets from the server.
	Packets chan []byte
	// Messages receives the server's control messages (PUSH_REPLY, AUTH_FAILED, HALT, RESTART...).
	Messages chan string

	mu     sync.Mutex // guards the fields below for cross-goroutine readers
	pushed []string
	keys   *datachannel.Keys
	keyID  uint8
	peerID uint32
	cipher string
	ekm    bool
	reneg  int
	pings  int

	// loop-owned
	sid, remoteSID wire.SessionID
	ks             [8]*clientKey
	active         *clientKey
	rx             [8]*datachannel.Keys // decryption by key id; loop only
	pushDone       chan struct{}
}

type clientKey struct {
	id     uint8
	send   *reliable.Sender
	recv   *reliable.Receiver
	pipe   *tlspipe.Pipe
	conn   *tls.Conn
	msg    *keymethod.Message // ours
	server *keymethod.Message
	ready  chan struct{} // closed when keys are installed
}

type evServerKM struct {
	k   *clientKey
	msg *keymethod.Message
	err error
}

type evMsg struct{ m string }

// New starts a client on conn. Call Connect next.
func New(conn net.Conn, cfg Config) *Client {
	if cfg.Ciphers == "" {
		cfg.Ciphers = "AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305"
	}
	if cfg.Proto == 0 {
		cfg.Proto = keymethod.ProtoDataV2 | keymethod.ProtoTLSKeyExport | keymethod.ProtoRequestPush | keymethod.ProtoCCExitNotify
	}
	if cfg.Options == "" {
		cfg.Options = "V4,dev-type tun,link-mtu 1559,tun-mtu 1500,proto UDPv4,cipher AES-256-GCM,auth [null-digest],keysize 256,key-method 2,tls-client"
	}
	if cfg.Auth == "" {
		cfg.Auth = "SHA1"
	}
	if cfg.RTO == 0 {
		cfg.RTO = 300 * time.Millisecond
	}
	c := &Client{
		cfg: cfg, conn: conn,
		in: make(chan []byte, 256), events: make(chan any, 16), wake: make(chan struct{}, 1),
		cmds: make(chan func(), 16), done: make(chan struct{}),
		Packets: make(chan []byte, 256), Messages: make(chan string, 32), pushDone: make(chan struct{}),
	}
	if cfg.TLSCrypt != nil {
		c.tc = tlscrypt.New(cfg.TLSCrypt, false)
	}
	_, _ = rand.Read(c.sid[:])
	c.wg.Add(2)
	go c.readLoop()
	go c.loop()
	return c
}

// Close stops the client and waits for its goroutines.
func (c *Client) Close() {
	c.once.Do(func() { close(c.done) })
	c.conn.Close()
	c.wg.Wait()
}

// Connect runs the handshake until the PUSH_REPLY has been processed and returns the pushed options.
func (c *Client) Connect(ctx context.Context) ([]string, error) {
	c.do(func() { c.newKey(0) })
	select {
	case <-c.pushDone:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.pushed, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, errors.New("testclient: closed")
	}
}

// Renegotiate starts a client-initiated soft reset and waits until the new key is in use.
func (c *Client) Renegotiate(ctx context.Context) error {
	ready := make(chan chan struct{}, 1)
	c.do(func() {
		id := (c.active.id + 1) & wire.KeyIDMask
		if id == 0 {
			id = 1
		}
		ready <- c.newKey(id).ready
	})
	select {
	case r := <-ready:
		select {
		case <-r:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Renegotiations is the number of keys installed after the first.
func (c *Client) Renegotiations() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reneg
}

// Pings is the number of keepalive pings received.
func (c *Client) Pings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pings
}

// Cipher and KeyDerivation report what the server pushed.
func (c *Client) Cipher() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cipher, c.ekm
}

// SendControl sends a control message ("EXIT", "PUSH_REQUEST") on the active key.
func (c *Client) SendControl(m string) {
	c.do(func() {
		if c.active != nil {
			_, _ = c.active.conn.Write(append([]byte(m), 0))
		}
	})
}

// SendOCCExit sends explicit-exit-notify on the data channel, as clients without cc-exit do.
func (c *Client) SendOCCExit() error {
	p := append(datachannel.OCCMagic[:], datachannel.OCCExit)
	return c.Send(p)
}

// Send encrypts an IP packet and sends it.
func (c *Client) Send(pkt []byte) error {
	c.mu.Lock()
	k, id, peer := c.keys, c.keyID, c.peerID
	c.mu.Unlock()
	if k == nil {
		return errors.New("testclient: no data key")
	}
	buf := make([]byte, 2+datachannel.Headroom+len(pkt)+datachannel.Tailroom)
	off := 2 + datachannel.Headroom
	copy(buf[off:], pkt)
	c.mu.Lock() // Encrypt is single-writer
	out, err := k.Encrypt(buf, off, len(pkt), wire.NewDataHeader(id, peer))
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.write(out)
}

// SendRaw writes an arbitrary packet (for robustness tests).
func (c *Client) SendRaw(pkt []byte) error { return c.write(pkt) }

func (c *Client) write(pkt []byte) error {
	if c.cfg.UDP {
		_, err := c.conn.Write(pkt)
		return err
	}
	f := make([]byte, 2+len(pkt))
	binary.BigEndian.PutUint16(f, uint16(len(pkt)))
	copy(f[2:], pkt)
	_, err := c.conn.Write(f)
	return err
}

func (c *Client) do(f func()) {
	select {
	case c.cmds <- f:
	case <-c.done:
	}
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	for {
		var pkt []byte
		if c.cfg.UDP {
			n, err := c.conn.Read(buf)
			if err != nil {
				c.stop(err)
				return
			}
			pkt = append([]byte(nil), buf[:n]...)
		} else {
			if _, err := io.ReadFull(c.conn, buf[:2]); err != nil {
				c.stop(err)
				return
			}
			n := int(binary.BigEndian.Uint16(buf))
			if _, err := io.ReadFull(c.conn, buf[:n]); err != nil {
				c.stop(err)
				return
			}
			pkt = append([]byte(nil), buf[:n]...)
		}
		select {
		case c.in <- pkt:
		case <-c.done:
			return
		}
	}
}

func (c *Client) stop(err error) {
	c.once.Do(func() {
		c.closeErr = err
		close(c.done)
	})
}

// Done is closed when the client stops (connection closed).
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) loop() {
	defer c.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	defer func() {
		for _, k := range c.ks {
			if k != nil {
				k.pipe.Close()
			}
		}
	}()
	for {
		select {
		case <-c.done:
			return
		case pkt := <-c.in:
			c.onPacket(pkt)
		case ev := <-c.events:
			c.onEvent(ev)
		case f := <-c.cmds:
			f()
		case <-c.wake:
		case <-tick.C:
		}
		c.flush()
	}
}

func (c *Client) newKey(id uint8) *clientKey {
	k := &clientKey{
		id:    id,
		send:  reliable.NewSender(reliable.DefaultSendWindow, c.cfg.RTO, 4*c.cfg.RTO),
		recv:  reliable.NewReceiver(reliable.DefaultRecvWindow),
		ready: make(chan struct{}),
	}
	k.pipe = tlspipe.New(1<<20, func() {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}, c.conn.RemoteAddr())
	k.conn = tls.Client(k.pipe, c.cfg.TLS)
	op := wire.ControlSoftResetV1
	if id == 0 {
		op = wire.ControlHardResetClientV2
	}
	_, _ = k.send.Push(op, nil)
	if old := c.ks[id]; old != nil {
		old.pipe.Close()
	}
	c.ks[id] = k
	c.wg.Add(1)
	go c.runTLS(k)
	return k
}

func (c *Client) runTLS(k *clientKey) {
	defer c.wg.Done()
	post := func(ev any) {
		select {
		case c.events <- ev:
		case <-c.done:
		}
	}
	if err := k.conn.Handshake(); err != nil {
		post(evServerKM{k, nil, err})
		return
	}
	pi := fmt.Sprintf("IV_VER=2.6.14\nIV_PLAT=linux\nIV_PROTO=%d\nIV_CIPHERS=%s\nIV_TCPNL=1\n", c.cfg.Proto, c.cfg.Ciphers)
	msg, err := keymethod.NewClientMessage(c.cfg.Options, c.cfg.Username, c.cfg.Password, pi)
	if err != nil {
		post(evServerKM{k, nil, err})
		return
	}
	k.msg = msg
	if _, err := k.conn.Write(msg.Append(nil)); err != nil {
		post(evServerKM{k, nil, err})
		return
	}
	buf := make([]byte, 16<<10)
	n, err := k.conn.Read(buf)
	if err != nil {
		post(evServerKM{k, nil, err})
		return
	}
	smsg, err := keymethod.Parse(buf[:n], false)
	post(evServerKM{k, smsg, err})
	if err != nil {
		return
	}
	if k.id == 0 && c.cfg.Proto&keymethod.ProtoRequestPush == 0 {
		_, _ = k.conn.Write(append([]byte(push.Request), 0))
	}
	for {
		n, err := k.conn.Read(buf)
		for _, m := range push.SplitMessages(buf[:n]) {
			// Straight to the test, so a message that arrived just before the server hung up is not lost.
			select {
			case c.Messages <- m:
			default:
			}
			post(evMsg{m})
		}
		if err != nil {
			return
		}
	}
}

func (c *Client) onPacket(pkt []byte) {
	op, keyID := wire.SplitHeader(pkt[0])
	if op.IsData() {
		c.onData(pkt)
		return
	}
	var p wire.ControlPacket
	body := pkt[wire.ControlHeaderLen:]
	if _, _, _, _, err := wire.ParseControlHeader(pkt); err != nil {
		return
	}
	if c.tc != nil {
		var err error
		if body, err = c.tc.Unwrap(nil, pkt); err != nil {
			return
		}
	}
	p.Opcode, p.KeyID = op, keyID
	copy(p.SessionID[:], pkt[1:])
	if err := p.ParseBody(body); err != nil {
		return
	}
	if op == wire.ControlHardResetServerV2 {
		c.remoteSID = p.SessionID
	}
	k := c.ks[keyID]
	if k == nil && op == wire.ControlSoftResetV1 && c.active != nil {
		k = c.newKey(keyID) // server-initiated renegotiation
	}
	if k == nil || p.SessionID != c.remoteSID {
		return
	}
	for _, a := range p.AckList() {
		k.send.Ack(a)
	}
	if !op.HasMessageID() {
		return
	}
	k.recv.Receive(p.MessageID, op, p.Payload)
	for {
		m, ok := k.recv.Next()
		if !ok {
			break
		}
		if m.Opcode == wire.ControlV1 {
			_ = k.pipe.Feed(m.Payload)
		}
	}
}

func (c *Client) onData(pkt []byte) {
	h, err := wire.ParseDataHeader(pkt)
	if err != nil {
		return
	}
	k := c.rx[h.KeyID]
	if k == nil {
		return
	}
	plain, err := k.Decrypt(pkt, h.Len)
	if err != nil {
		return
	}
	if datachannel.Classify(plain) == datachannel.KindPing {
		c.mu.Lock()
		c.pings++
		c.mu.Unlock()
	}
	if datachannel.Classify(plain) != datachannel.KindIP {
		return
	}
	select {
	case c.Packets <- append([]byte(nil), plain...):
	default:
	}
}

func (c *Client) onEvent(ev any) {
	switch e := ev.(type) {
	case evServerKM:
		if e.err != nil {
			c.stop(fmt.Errorf("testclient: key exchange: %w", e.err))
			return
		}
		e.k.server = e.msg
		if e.k.id != 0 {
			c.install(e.k)
		}
	case evMsg:
		if strings.HasPrefix(e.m, push.ReplyPrefix) {
			c.onPushReply(e.m)
		}
	}
}

func (c *Client) onPushReply(m string) {
	opts, cont, err := push.ParseReply(m)
	if err != nil {
		c.stop(err)
		return
	}
	c.mu.Lock()
	c.pushed = append(c.pushed, opts...)
	for _, o := range opts {
		f := strings.Fields(o)
		switch {
		case f[0] == "cipher" && len(f) > 1:
			c.cipher = f[1]
		case f[0] == "peer-id" && len(f) > 1:
			fmt.Sscan(f[1], &c.peerID)
		case f[0] == "key-derivation" && len(f) > 1 && f[1] == "tls-ekm":
			c.ekm = true
		case f[0] == "protocol-flags" && strings.Contains(o, "tls-ekm"):
			c.ekm = true
		}
	}
	c.mu.Unlock()
	if cont == 2 {
		return
	}
	c.mu.Lock()
	if c.peerID == 0 && !strings.Contains(strings.Join(c.pushed, ","), "peer-id") {
		c.peerID = wire.NoPeerID
	}
	c.mu.Unlock()
	c.install(c.ks[0])
	select {
	case <-c.pushDone:
	default:
		close(c.pushDone)
	}
}

func (c *Client) install(k *clientKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, ok := datachannel.LookupCipher(c.cipher)
	if !ok {
		c.closeErr = fmt.Errorf("testclient: cipher %q", c.cipher)
		return
	}
	dg, _ := datachannel.LookupDigest(c.cfg.Auth)
	var km *keymethod.KeyMaterial
	if c.ekm {
		cs := k.conn.ConnectionState()
		var err error
		if km, err = keymethod.DeriveKeysEKM(cs.ExportKeyingMaterial); err != nil {
			c.closeErr = err
			return
		}
	} else {
		km = keymethod.DeriveKeysPRF(k.msg, k.server, c.sid, c.remoteSID)
	}
	keys, err := datachannel.New(ci, dg, km, false)
	if err != nil {
		c.closeErr = err
		return
	}
	if c.keys != nil {
		c.reneg++
	}
	c.rx[k.id] = keys
	c.keys, c.keyID = keys, k.id
	c.active = k
	close(k.ready)
}

func (c *Client) flush() {
	now := time.Now()
	for _, k := range c.ks {
		if k == nil {
			continue
		}
		for !k.send.Full() {
			b := k.pipe.Take(1000)
			if b == nil {
				break
			}
			_, _ = k.send.Push(wire.ControlV1, b)
		}
		k.send.Due(now, func(m reliable.Message) { c.sendControl(k, m.Opcode, m.ID, m.Payload) })
		for k.recv.PendingAcks() > 0 {
			c.sendControl(k, wire.AckV1, 0, nil)
		}
	}
}

func (c *Client) sendControl(k *clientKey, op wire.Opcode, id uint32, payload []byte) {
	p := wire.ControlPacket{Opcode: op, KeyID: k.id, SessionID: c.sid, MessageID: id, Payload: payload}
	p.NumAcks = k.recv.TakeAcks(p.Acks[:wire.SendAcksMax])
	p.RemoteSessionID = c.remoteSID
	var pkt []byte
	if c.tc != nil {
		var err error
		if pkt, err = c.tc.Wrap(nil, p.AppendHeader(nil), p.AppendBody(nil), time.Now()); err != nil {
			return
		}
	} else {
		pkt = p.Append(nil)
	}
	_ = c.write(pkt)
}

// Err is why the client stopped, if it has.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.closeErr
	default:
		return nil
	}
}
