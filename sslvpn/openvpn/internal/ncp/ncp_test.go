package ncp

import (
	"errors"
	"testing"

	"toride/sslvpn/openvpn/internal/keymethod"
)

func TestSelect(t *testing.T) {
	all := []string{"AES-128-CBC", "AES-128-GCM", "CHACHA20-POLY1305", "AES-256-GCM", "AES-256-CBC"}
	for _, tc := range []struct {
		name     string
		server   []string
		peerInfo string
		options  string
		want     string
		ncp      bool
	}{
		{"2.6 default client", all, "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n", "V4,cipher AES-256-GCM", "AES-256-GCM", true},
		{"seed profile (ncp-ciphers AES-128-CBC)", all, "IV_CIPHERS=AES-128-CBC\nIV_NCP=2\n", "V4,cipher AES-128-CBC", "AES-128-CBC", true},
		{"strongest wins over server order", []string{"AES-128-GCM", "AES-256-GCM"}, "IV_CIPHERS=AES-128-GCM:AES-256-GCM\n", "", "AES-256-GCM", true},
		{"chacha only", []string{"CHACHA20-POLY1305"}, "IV_CIPHERS=AES-256-GCM:CHACHA20-POLY1305\n", "", "CHACHA20-POLY1305", true},
		{"case-insensitive", all, "IV_CIPHERS=aes-128-gcm\n", "", "AES-128-GCM", true},
		{"2.4 client: IV_NCP=2 means GCM", all, "IV_NCP=2\n", "V4,cipher AES-256-CBC", "AES-256-GCM", true},
		{"2.3 client: its OCC cipher", all, "IV_VER=2.3.18\n", "V4,cipher AES-256-CBC", "AES-256-CBC", false},
		{"IV_CIPHERS overrides OCC", []string{"AES-256-CBC"}, "IV_CIPHERS=AES-256-GCM\n", "V4,cipher AES-256-CBC", "", true},
		{"nothing shared", []string{"AES-256-GCM"}, "IV_CIPHERS=AES-128-CBC\n", "", "", true},
		{"unknown names ignored", []string{"BF-CBC", "AES-256-GCM"}, "IV_CIPHERS=BF-CBC:AES-256-GCM\n", "", "AES-256-GCM", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pi := keymethod.ParsePeerInfo(tc.peerInfo)
			offer := OfferFrom(&pi, tc.options)
			if offer.SupportsNCP() != tc.ncp {
				t.Errorf("SupportsNCP = %v, want %v", offer.SupportsNCP(), tc.ncp)
			}
			c, err := Select(tc.server, offer)
			if tc.want == "" {
				if !errors.Is(err, ErrNoCommonCipher) {
					t.Errorf("Select = %v %v, want ErrNoCommonCipher", c.Name, err)
				}
				return
			}
			if err != nil || c.Name != tc.want {
				t.Errorf("Select = %v %v, want %s", c.Name, err, tc.want)
			}
		})
	}
}
