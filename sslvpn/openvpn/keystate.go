package openvpn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/ncp"
	"toride/sslvpn/openvpn/internal/push"
)

var randRead = rand.Read

// runTLS is a key state's TLS goroutine: the TLS handshake, the key-method 2 exchange, key derivation, for the
// first key Backend.Connect, and then reading the client's control messages until the pipe closes.
func (s *session) runTLS(ks *keyState) {
	defer s.wg.Done()
	buf := make([]byte, tlsReadBuf)
	if err := s.keyExchange(ks, buf); err != nil {
		s.post(evTLSDone{ks, err})
		return
	}
	for {
		n, err := ks.conn.Read(buf)
		for _, m := range push.SplitMessages(buf[:n]) {
			s.post(evMessage{ks, m})
		}
		if err != nil {
			s.post(evTLSDone{ks, fmt.Errorf("%w: control channel: %v", ErrProtocol, err)})
			return
		}
	}
}

func (s *session) keyExchange(ks *keyState, buf []byte) error {
	cfg := s.srv.cfg
	ctx, cancel := context.WithDeadline(s.ctx, ks.started.Add(cfg.HandshakeTimeout))
	defer cancel()
	if err := ks.conn.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: during TLS", ErrHandshakeTimeout)
		}
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	n, err := ks.conn.Read(buf)
	if err != nil {
		return fmt.Errorf("%w: reading key-method 2 message: %v", ErrProtocol, err)
	}
	client, err := keymethod.Parse(buf[:n], true)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	pi := keymethod.ParsePeerInfo(client.PeerInfo)
	var subject []byte
	if certs := ks.conn.ConnectionState().PeerCertificates; len(certs) > 0 {
		subject = certs[0].RawSubject
	}
	if ks.initial {
		s.clientSubject, s.clientUser = subject, client.Username
	} else if !bytes.Equal(subject, s.clientSubject) || client.Username != s.clientUser {
		// As OpenVPN: a renegotiation may renew the certificate, not change who the client is.
		return fmt.Errorf("%w: client identity changed during renegotiation", ErrProtocol)
	}
	ready := evKeyReady{ks: ks, proto: pi.Proto}
	if ks.initial {
		ready.cipher, ready.failure = s.negotiate(&pi, client.Options)
		ready.useEKM = !cfg.DisableKeyExport && pi.Proto&keymethod.ProtoTLSKeyExport != 0
		if !ready.cipher.AEAD {
			ready.digest = cfg.digest
		}
	} else {
		// Renegotiations keep what the first key negotiated; the loop set these before starting this goroutine.
		ready.cipher, ready.digest, ready.useEKM, ready.proto = s.cipher, s.digest, s.useEKM, s.clientProto
	}
	cipherName := ready.cipher.Name
	if cipherName == "" {
		cipherName = cfg.ciphers[0].Name
	}
	authName := "[null-digest]"
	keyBits := 256
	if c, ok := datachannel.LookupCipher(cipherName); ok {
		keyBits = 8 * c.KeyLen
		if !c.AEAD {
			authName = cfg.digest.Name
		}
	}
	proto := "UDPv4"
	if s.transport == TCP {
		proto = "TCPv4_SERVER"
	}
	server, err := keymethod.NewServerMessage(keymethod.ServerOptions(proto, cipherName, authName, keyBits))
	if err != nil {
		return err
	}
	if _, err := ks.conn.Write(server.Append(nil)); err != nil {
		return fmt.Errorf("%w: writing key-method 2 message: %v", ErrProtocol, err)
	}
	if ready.failure == nil {
		var km *keymethod.KeyMaterial
		if ready.useEKM {
			cs := ks.conn.ConnectionState()
			km, err = keymethod.DeriveKeysEKM(cs.ExportKeyingMaterial)
			if err != nil && ks.initial {
				// TLS 1.2 without extended master secret cannot export: fall back, and do not push tls-ekm.
				ready.useEKM, err = false, nil
			}
			if err != nil {
				return fmt.Errorf("%w: %v", ErrProtocol, err)
			}
		}
		if km == nil {
			km = keymethod.DeriveKeysPRF(client, server, s.remoteSID, s.localSID)
		}
		ready.keys, err = datachannel.New(ready.cipher, ready.digest, km, true)
		clear(km[:])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
	}
	s.post(ready)
	if !ks.initial || ready.failure != nil {
		return nil
	}
	cs := ks.conn.ConnectionState()
	kd := "prf"
	if ready.useEKM {
		kd = "tls-ekm"
	}
	req := &ConnectRequest{
		Remote:           s.Remote(),
		Transport:        s.transport,
		PeerCertificates: cs.PeerCertificates,
		VerifiedChains:   cs.VerifiedChains,
		TLSVersion:       cs.Version,
		Username:         client.Username,
		Password:         client.Password,
		PeerInfo:         peerInfoFrom(&pi),
		Options:          client.Options,
		Cipher:           ready.cipher.Name,
		KeyDerivation:    kd,
	}
	if !ready.cipher.AEAD {
		req.Auth = ready.digest.Name
	}
	grant, err := s.srv.backend.Connect(ctx, req, s)
	if err == nil && grant == nil {
		err = errors.New("refused")
	}
	if err != nil && ctx.Err() != nil && s.ctx.Err() == nil {
		err = fmt.Errorf("authentication timed out")
	}
	s.post(evConnected{ks, grant, err})
	return nil
}

// negotiate picks the data-channel cipher for a new client and checks its HMAC digest for CBC ciphers.
func (s *session) negotiate(pi *keymethod.PeerInfo, options string) (datachannel.Cipher, error) {
	cfg := s.srv.cfg
	if _, ok := keymethod.OptionValue(options, "comp-lzo"); ok {
		// 2.6 clients announce any compression setting (comp-lzo, compress, even "no"/stub) this way and then
		// frame every data packet with a compression byte, which this engine does not speak.
		return datachannel.Cipher{}, fmt.Errorf("%w: compression (comp-lzo/compress) is not supported, remove it from the client configuration", ErrUnsupported)
	}
	offer := ncp.OfferFrom(pi, options)
	c, err := ncp.Select(cfg.DataCiphers, offer)
	if err != nil {
		return datachannel.Cipher{}, fmt.Errorf("%w: %v", ErrNoCommonCipher, err)
	}
	if !c.AEAD {
		if auth, ok := keymethod.OptionValue(options, "auth"); ok && !strings.EqualFold(auth, cfg.digest.Name) {
			return c, fmt.Errorf("%w: client uses auth %s, server uses %s", ErrUnsupported, auth, cfg.digest.Name)
		}
	}
	return c, nil
}
