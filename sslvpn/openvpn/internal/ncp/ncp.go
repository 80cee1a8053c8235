// Package ncp negotiates the data-channel cipher (Negotiable Crypto Parameters, ssl_ncp.c): the strongest
// cipher that both the server's list and the client's offer contain.
//
// The client's offer is, in order of precedence: its IV_CIPHERS list (OpenVPN 2.5+); AES-256-GCM and AES-128-GCM
// when it announces IV_NCP>=2 (2.4); otherwise the cipher in its OCC options string (older clients, which
// cannot switch and must get exactly that cipher).
//
// Functions are pure and safe for concurrent use.
package ncp

import (
	"errors"
	"fmt"
	"strings"

	"toride/sslvpn/openvpn/internal/datachannel"
	"toride/sslvpn/openvpn/internal/keymethod"
)

// ErrNoCommonCipher is returned when the client offers nothing the server allows.
var ErrNoCommonCipher = errors.New("ncp: no shared data-channel cipher")

// Offer is what the client supports.
type Offer struct {
	Ciphers    []string // IV_CIPHERS
	HasCiphers bool
	NCPVersion int    // IV_NCP
	OCCCipher  string // "cipher" from its options string
}

// OfferFrom extracts the offer from a client's peer info and options string.
func OfferFrom(pi *keymethod.PeerInfo, options string) Offer {
	occ, _ := keymethod.OptionValue(options, "cipher")
	return Offer{Ciphers: pi.Ciphers, HasCiphers: pi.HasCiphers, NCPVersion: pi.NCP, OCCCipher: occ}
}

// SupportsNCP reports whether the client takes a pushed cipher (tls_peer_supports_ncp): only then is "cipher"
// pushed.
func (o Offer) SupportsNCP() bool { return o.HasCiphers || o.NCPVersion >= 2 }

// List returns the ciphers the client accepts.
func (o Offer) List() []string {
	switch {
	case o.HasCiphers:
		return o.Ciphers
	case o.NCPVersion >= 2:
		l := []string{"AES-256-GCM", "AES-128-GCM"}
		if o.OCCCipher != "" {
			l = append(l, o.OCCCipher)
		}
		return l
	case o.OCCCipher != "":
		return []string{o.OCCCipher}
	}
	return nil
}

// Select returns the strongest cipher in server that the client offers.
func Select(server []string, o Offer) (datachannel.Cipher, error) {
	var best datachannel.Cipher
	found := false
	for _, name := range server {
		c, ok := datachannel.LookupCipher(name)
		if !ok || !contains(o.List(), c.Name) {
			continue
		}
		if !found || c.Strength > best.Strength {
			best, found = c, true
		}
	}
	if !found {
		return datachannel.Cipher{}, fmt.Errorf("%w (server %s, client %s)", ErrNoCommonCipher,
			strings.Join(server, ":"), strings.Join(o.List(), ":"))
	}
	return best, nil
}

func contains(list []string, name string) bool {
	for _, l := range list {
		if strings.EqualFold(l, name) {
			return true
		}
	}
	return false
}
