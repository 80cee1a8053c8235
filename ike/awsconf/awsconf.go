// Package awsconf reads the cloud's downloadable site-to-site VPN configuration — the "Generic" text file and
// the XML vpn_connection document (the API's CustomerGatewayConfiguration) — into one Connection describing both
// tunnels, and turns it into an ike.Connection.
//
// Parsers take untrusted input: they never panic (fuzzed), bound the input size, and report the line (Generic)
// or the element path (XML) of what is missing or wrong. Pre-shared keys are never included in errors.
//
// Everything here is a pure function of its input and safe for concurrent use.
package awsconf

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"toride/ike"
)

// Errors wrapped by the parsers.
var (
	ErrUnknownFormat = errors.New("awsconf: not a cloud VPN configuration file (neither the Generic text format nor the XML vpn_connection format)")
	ErrInvalid       = errors.New("awsconf: invalid configuration file")
)

// MaxSize is the largest file the parsers accept; the cloud's files are a few KiB.
const MaxSize = 1 << 20

// Format names a file format.
type Format string

// The formats.
const (
	FormatGeneric Format = "generic"
	FormatXML     Format = "xml"
)

// Connection is one VPN connection as the cloud describes it.
type Connection struct {
	Format            Format
	VPNConnectionID   string
	VPNGatewayID      string
	CustomerGatewayID string
	Tunnels           []Tunnel
}

// Tunnel is one of the connection's tunnels. "Customer gateway" is the appliance, "VPN gateway" the cloud.
type Tunnel struct {
	CustomerGatewayOutside netip.Addr
	VPNGatewayOutside      netip.Addr
	// CustomerGatewayInside and VPNGatewayInside are addresses with the tunnel's /30 prefix length.
	CustomerGatewayInside netip.Prefix
	VPNGatewayInside      netip.Prefix
	PreSharedKey          string
	// IKEVersion is 1 or 2. Files that do not say (the XML format, older Generic files) describe IKEv1 main
	// mode, which every cloud endpoint accepts unless restricted.
	IKEVersion int
	Phase1     Phase
	Phase2     Phase
	// DPDInterval and DPDRetries are the cloud's recommendation for the appliance's dead peer detection.
	DPDInterval time.Duration
	DPDRetries  int
	TCPMSS      int
	MTU         int
	// BGP is set when the connection uses dynamic routing; StaticNextHop when it uses static routing.
	BGP           *BGP
	StaticNextHop netip.Addr
}

// Phase is one negotiation phase as the file states it, with the algorithms named as ike names them. Mode is
// "main" for phase 1 and "tunnel" for phase 2.
type Phase struct {
	Encryption ike.Encryption
	Integrity  ike.Integrity
	DHGroup    int // phase 2: the PFS group; 0 means no PFS
	Lifetime   time.Duration
	Mode       string
}

// BGP is the dynamic routing the cloud expects between the inside addresses.
type BGP struct {
	CustomerASN uint32
	CloudASN    uint32
	Neighbor    netip.Addr
	HoldTime    time.Duration
}

// Parse detects the format of data and parses it.
func Parse(data []byte) (*Connection, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes is larger than any cloud VPN configuration (limit %d)", ErrInvalid, len(data), MaxSize)
	}
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case bytes.HasPrefix(trimmed, []byte("<")):
		return ParseXML(data)
	case tunnelHeader.Match(data):
		return ParseGeneric(data)
	}
	return nil, fmt.Errorf("%w: expected an \"IPSec Tunnel #1\" line (Generic) or a <vpn_connection> document (XML)", ErrUnknownFormat)
}

// normEncryption maps the files' names (aes-128-cbc, AES128, aes-256-gcm-16, …) to ike's.
func normEncryption(s string) (ike.Encryption, bool) {
	switch squash(s) {
	case "aes128cbc", "aes128", "aescbc128":
		return ike.AES128, true
	case "aes256cbc", "aes256", "aescbc256":
		return ike.AES256, true
	case "aes128gcm16", "aes128gcm", "aesgcm128":
		return ike.AES128GCM16, true
	case "aes256gcm16", "aes256gcm", "aesgcm256":
		return ike.AES256GCM16, true
	}
	return "", false
}

// normIntegrity maps sha1, hmac-sha1-96, sha2-256, hmac-sha2-256-128, … to ike's names.
func normIntegrity(s string) (ike.Integrity, bool) {
	switch strings.TrimPrefix(squash(s), "hmac") {
	case "sha1", "sha196", "sha":
		return ike.SHA1, true
	case "sha256", "sha2256", "sha256128", "sha2256128":
		return ike.SHA2256, true
	case "sha384", "sha2384", "sha384192", "sha2384192":
		return ike.SHA2384, true
	case "sha512", "sha2512", "sha512256", "sha2512256":
		return ike.SHA2512, true
	}
	return "", false
}

// normGroup reads "Group 2", "Diffie-Hellman Group 14", "group14", "14".
func normGroup(s string) (int, bool) {
	v := squash(s)
	v = strings.TrimPrefix(v, "diffiehellman")
	v = strings.TrimPrefix(v, "group")
	v = strings.TrimPrefix(v, "dh")
	if v == "" || len(v) > 2 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n == 2 || n == 5 || (n >= 14 && n <= 24) {
		return n, true
	}
	return 0, false
}

// squash lowercases s and drops everything but letters and digits.
func squash(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// parseSeconds reads "28800 seconds" or "28800".
func parseSeconds(s string) (time.Duration, bool) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 || (len(f) == 2 && !strings.HasPrefix(strings.ToLower(f[1]), "sec")) {
		return 0, false
	}
	n, ok := atoi(f[0])
	if !ok || n <= 0 || n > 1<<30 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

func atoi(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func parseIKEVersion(s string) (int, bool) {
	switch squash(s) {
	case "ikev1", "1", "v1":
		return 1, true
	case "ikev2", "2", "v2":
		return 2, true
	}
	return 0, false
}

// check validates what both parsers produce. where names a tunnel's location for errors.
func (t *Tunnel) check(where func(field string) string) error {
	var errs []error
	if !t.CustomerGatewayInside.Addr().Is4() || t.CustomerGatewayInside.Bits() != 30 {
		errs = append(errs, fmt.Errorf("%w: %s: the customer gateway inside address must be an IPv4 /30", ErrInvalid, where("customer inside")))
	}
	if !t.VPNGatewayInside.Addr().Is4() || t.VPNGatewayInside.Bits() != 30 {
		errs = append(errs, fmt.Errorf("%w: %s: the VPN gateway inside address must be an IPv4 /30", ErrInvalid, where("cloud inside")))
	}
	if t.CustomerGatewayInside.IsValid() && t.VPNGatewayInside.IsValid() &&
		t.CustomerGatewayInside.Masked() != t.VPNGatewayInside.Masked() {
		errs = append(errs, fmt.Errorf("%w: %s: the two inside addresses are not in the same /30", ErrInvalid, where("cloud inside")))
	}
	return errors.Join(errs...)
}
