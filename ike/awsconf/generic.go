package awsconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"
)

var (
	tunnelHeader = regexp.MustCompile(`(?im)^[ \t]*IPsec Tunnel #([0-9]{1,2})[ \t]*\r?$`)
	sectionLine  = regexp.MustCompile(`^\s*#([1-4]):\s*(.*?)\s*$`)
	kvLine       = regexp.MustCompile(`^\s*-\s*([^:]+?)\s*:\s*(.*?)\s*$`)
	idLine       = regexp.MustCompile(`^\s*Your (VPN Connection|Virtual Private Gateway|Transit Gateway|Customer Gateway) ID\s*:\s*(\S*)\s*$`)
	spaces       = regexp.MustCompile(`\s+`)
)

// section numbers of a Generic tunnel block.
const (
	secIKE    = 1
	secIPsec  = 2
	secTunnel = 3
	secRoute  = 4
)

var sectionNames = map[int]string{
	secIKE:    "#1: Internet Key Exchange Configuration",
	secIPsec:  "#2: IPSec Configuration",
	secTunnel: "#3: Tunnel Interface Configuration",
	secRoute:  "#4: (BGP or Static Routing) Configuration",
}

// genericTunnel collects one tunnel block: every "- key : value" line with its line number, by section.
type genericTunnel struct {
	number int
	line   int
	bgp    bool
	static bool
	values map[string]genericValue // "<section>/<sub>/<key>"
}

type genericValue struct {
	text string
	line int
}

// ParseGeneric parses the Generic text format.
func ParseGeneric(data []byte) (*Connection, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxSize)
	}
	c := &Connection{Format: FormatGeneric}
	var (
		tunnels []*genericTunnel
		cur     *genericTunnel
		section int
		sub     string // in #3: "outside" or "inside"
		lineNo  int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxSize)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if m := tunnelHeader.FindStringSubmatch(line); m != nil {
			n, _ := atoi(m[1])
			for _, t := range tunnels {
				if t.number == n {
					return nil, fmt.Errorf("%w: line %d: a second \"IPSec Tunnel #%d\" (the first is at line %d)", ErrInvalid, lineNo, n, t.line)
				}
			}
			cur = &genericTunnel{number: n, line: lineNo, values: map[string]genericValue{}}
			tunnels = append(tunnels, cur)
			section, sub = 0, ""
			continue
		}
		if m := idLine.FindStringSubmatch(line); m != nil && cur == nil {
			switch m[1] {
			case "VPN Connection":
				c.VPNConnectionID = m[2]
			case "Virtual Private Gateway", "Transit Gateway":
				c.VPNGatewayID = m[2]
			case "Customer Gateway":
				c.CustomerGatewayID = m[2]
			}
			continue
		}
		if cur == nil {
			continue // preamble prose
		}
		if m := sectionLine.FindStringSubmatch(line); m != nil {
			section, _ = atoi(m[1])
			sub = ""
			if section == secRoute {
				title := strings.ToLower(m[2])
				cur.bgp = strings.Contains(title, "bgp") || strings.Contains(title, "border gateway")
				cur.static = strings.Contains(title, "static")
			}
			continue
		}
		lower := strings.ToLower(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(lower, "outside ip address"):
			sub = "outside"
			continue
		case strings.HasPrefix(lower, "inside ip address"):
			sub = "inside"
			continue
		}
		m := kvLine.FindStringSubmatch(line)
		if m == nil {
			if lower != "" {
				sub = "" // prose ends an address block ("Configure your tunnel to fragment …")
			}
			continue
		}
		if section == 0 {
			continue
		}
		key := strings.ToLower(spaces.ReplaceAllString(strings.TrimSuffix(m[1], ":"), " "))
		val := m[2]
		if section == secTunnel {
			// "- Customer Gateway:        : 198.51.100.7" (sic) in some files.
			val = strings.TrimSpace(strings.TrimPrefix(val, ":"))
		}
		k := fmt.Sprintf("%d/%s/%s", section, sub, key)
		if prev, dup := cur.values[k]; dup {
			return nil, fmt.Errorf("%w: line %d: %q given twice in tunnel #%d (first at line %d)", ErrInvalid, lineNo, m[1], cur.number, prev.line)
		}
		cur.values[k] = genericValue{text: val, line: lineNo}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %w", ErrInvalid, lineNo+1, err)
	}
	if len(tunnels) == 0 {
		return nil, fmt.Errorf("%w: no \"IPSec Tunnel #1\" line", ErrUnknownFormat)
	}
	lastHeader := tunnels[len(tunnels)-1].line
	sort.Slice(tunnels, func(i, j int) bool { return tunnels[i].number < tunnels[j].number })
	var errs []error
	for i, gt := range tunnels {
		end := 0
		if i == len(tunnels)-1 && gt.line == lastHeader {
			end = lineNo
		}
		t, err := gt.tunnel(end)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.Tunnels = append(c.Tunnels, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(c.Tunnels) > 2 {
		return nil, fmt.Errorf("%w: %d tunnels; a cloud VPN connection has two", ErrInvalid, len(c.Tunnels))
	}
	return c, nil
}

// field reads one value; missing fields are reported against the tunnel header line.
type fieldReader struct {
	gt   *genericTunnel
	end  int // the file's last line, when gt is the last tunnel block (a cut-off file ends in it)
	errs []error
}

func (r *fieldReader) get(section int, sub, key string, required bool) (genericValue, bool) {
	v, ok := r.gt.values[fmt.Sprintf("%d/%s/%s", section, sub, key)]
	if !ok && required {
		where := sectionNames[section]
		if sub != "" {
			where += ", " + map[string]string{"outside": "Outside IP Addresses", "inside": "Inside IP Addresses"}[sub]
		}
		end := ""
		if r.end > 0 {
			end = fmt.Sprintf(" (the file ends at line %d: cut off?)", r.end)
		}
		r.errs = append(r.errs, fmt.Errorf("%w: tunnel #%d (line %d): missing \"- %s :\" in %s%s",
			ErrInvalid, r.gt.number, r.gt.line, titleCase(key), where, end))
	}
	return v, ok
}

func (r *fieldReader) bad(v genericValue, what, want string) {
	r.errs = append(r.errs, fmt.Errorf("%w: line %d: %s %q: %s", ErrInvalid, v.line, what, clip(v.text), want))
}

func (r *fieldReader) addr(section int, sub, key, what string) netip.Addr {
	v, ok := r.get(section, sub, key, true)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(v.text)
	if err != nil || !a.Is4() {
		r.bad(v, what, "want an IPv4 address")
		return netip.Addr{}
	}
	return a
}

func (r *fieldReader) prefix(section int, sub, key, what string) netip.Prefix {
	v, ok := r.get(section, sub, key, true)
	if !ok {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(v.text)
	if err != nil || !p.Addr().Is4() {
		r.bad(v, what, "want an IPv4 address with its prefix length, like 169.254.10.2/30")
		return netip.Prefix{}
	}
	return p
}

func (r *fieldReader) seconds(section int, key, what string, required bool) time.Duration {
	v, ok := r.get(section, "", key, required)
	if !ok {
		return 0
	}
	d, ok := parseSeconds(v.text)
	if !ok {
		r.bad(v, what, "want seconds, like \"3600 seconds\"")
	}
	return d
}

func (r *fieldReader) number(section int, sub, key, what string) (int, bool) {
	v, ok := r.get(section, sub, key, false)
	if !ok {
		return 0, false
	}
	f := strings.Fields(v.text)
	if len(f) == 0 {
		r.bad(v, what, "want a number")
		return 0, false
	}
	n, ok := atoi(f[0])
	if !ok {
		r.bad(v, what, "want a number")
	}
	return n, ok
}

func (gt *genericTunnel) tunnel(end int) (Tunnel, error) {
	r := &fieldReader{gt: gt, end: end}
	var t Tunnel

	// #1 IKE
	if v, ok := r.get(secIKE, "", "authentication method", false); ok && squash(v.text) != "presharedkey" {
		r.bad(v, "authentication method", "only pre-shared keys are supported")
	}
	if v, ok := r.get(secIKE, "", "pre-shared key", true); ok {
		if v.text == "" {
			r.errs = append(r.errs, fmt.Errorf("%w: line %d: the pre-shared key is empty", ErrInvalid, v.line))
		}
		t.PreSharedKey = v.text
	}
	t.IKEVersion = 1
	if v, ok := r.get(secIKE, "", "ike version", false); ok {
		if n, ok := parseIKEVersion(v.text); ok {
			t.IKEVersion = n
		} else {
			r.bad(v, "IKE version", "want IKEv1 or IKEv2")
		}
	}
	r.phase(&t.Phase1, secIKE, true)
	t.Phase1.Mode = "main"
	if v, ok := r.get(secIKE, "", "phase 1 negotiation mode", false); ok {
		if squash(v.text) != "main" {
			r.bad(v, "phase 1 negotiation mode", "only main mode is supported")
		}
	}

	// #2 IPsec
	if v, ok := r.get(secIPsec, "", "protocol", false); ok && squash(v.text) != "esp" {
		r.bad(v, "IPsec protocol", "only ESP is supported")
	}
	r.phase(&t.Phase2, secIPsec, false)
	t.Phase2.Mode = "tunnel"
	if v, ok := r.get(secIPsec, "", "mode", false); ok && squash(v.text) != "tunnel" {
		r.bad(v, "IPsec mode", "only tunnel mode is supported")
	}
	if n, ok := r.number(secIPsec, "", "dpd interval", "DPD interval"); ok {
		t.DPDInterval = time.Duration(n) * time.Second
	}
	if n, ok := r.number(secIPsec, "", "dpd retries", "DPD retries"); ok {
		t.DPDRetries = n
	}
	if n, ok := r.number(secIPsec, "", "tcp mss adjustment", "TCP MSS adjustment"); ok {
		t.TCPMSS = n
	}

	// #3 tunnel interface
	t.CustomerGatewayOutside = r.addr(secTunnel, "outside", "customer gateway", "customer gateway outside address")
	t.VPNGatewayOutside = r.cloudAddr("outside")
	t.CustomerGatewayInside = r.prefix(secTunnel, "inside", "customer gateway", "customer gateway inside address")
	if _, ok := r.gt.values[fmt.Sprintf("%d/inside/%s", secTunnel, "transit gateway")]; ok {
		t.VPNGatewayInside = r.prefix(secTunnel, "inside", "transit gateway", "cloud inside address")
	} else {
		t.VPNGatewayInside = r.prefix(secTunnel, "inside", "virtual private gateway", "cloud inside address")
	}
	if n, ok := r.number(secTunnel, "", "tunnel interface mtu", "tunnel interface MTU"); ok {
		t.MTU = n
	}

	// #4 routing
	switch {
	case gt.bgp:
		b := &BGP{}
		if n, ok := r.asn("customer gateway asn"); ok {
			b.CustomerASN = n
		}
		cloudKey := "virtual private gateway asn"
		if _, ok := r.gt.values[fmt.Sprintf("%d//transit gateway asn", secRoute)]; ok {
			cloudKey = "transit gateway asn"
		}
		if n, ok := r.asn(cloudKey); ok {
			b.CloudASN = n
		}
		if v, ok := r.get(secRoute, "", "neighbor ip address", true); ok {
			a, err := netip.ParseAddr(v.text)
			if err != nil || !a.Is4() {
				r.bad(v, "BGP neighbor", "want an IPv4 address")
			}
			b.Neighbor = a
		}
		if n, ok := r.number(secRoute, "", "neighbor hold time", "BGP hold time"); ok {
			b.HoldTime = time.Duration(n) * time.Second
		}
		t.BGP = b
	case gt.static:
		if v, ok := r.get(secRoute, "", "next hop", false); ok {
			a, err := netip.ParseAddr(v.text)
			if err != nil || !a.Is4() {
				r.bad(v, "static next hop", "want an IPv4 address")
			}
			t.StaticNextHop = a
		}
	}
	if len(r.errs) == 0 {
		if err := t.check(func(string) string { return fmt.Sprintf("tunnel #%d (line %d)", gt.number, gt.line) }); err != nil {
			r.errs = append(r.errs, err)
		}
	}
	return t, errors.Join(r.errs...)
}

func (r *fieldReader) cloudAddr(sub string) netip.Addr {
	if _, ok := r.gt.values[fmt.Sprintf("%d/%s/transit gateway", secTunnel, sub)]; ok {
		return r.addr(secTunnel, sub, "transit gateway", "cloud outside address")
	}
	return r.addr(secTunnel, sub, "virtual private gateway", "cloud outside address")
}

func (r *fieldReader) asn(key string) (uint32, bool) {
	v, ok := r.get(secRoute, "", key, true)
	if !ok {
		return 0, false
	}
	n, ok := atoi(strings.TrimSpace(v.text))
	if !ok || n <= 0 || n > 4294967295 {
		r.bad(v, "ASN", "want a number 1–4294967295")
		return 0, false
	}
	return uint32(n), true
}

// phase reads the algorithm lines common to #1 and #2.
func (r *fieldReader) phase(p *Phase, section int, ike bool) {
	if v, ok := r.get(section, "", "encryption algorithm", true); ok {
		if e, ok := normEncryption(v.text); ok {
			p.Encryption = e
		} else {
			r.bad(v, "encryption algorithm", "want aes-128-cbc, aes-256-cbc, aes-128-gcm-16 or aes-256-gcm-16")
		}
	}
	if v, ok := r.get(section, "", "authentication algorithm", !p.Encryption.AEAD()); ok {
		if a, ok := normIntegrity(v.text); ok {
			p.Integrity = a
		} else {
			r.bad(v, "authentication algorithm", "want sha1, sha2-256, sha2-384 or sha2-512")
		}
	}
	p.Lifetime = r.seconds(section, "lifetime", "lifetime", true)
	// Phase 1 names the group "Diffie-Hellman" (or, in older files, "Perfect Forward Secrecy"); phase 2 calls
	// its PFS group "Perfect Forward Secrecy".
	keys := []string{"perfect forward secrecy"}
	if ike {
		keys = []string{"diffie-hellman", "perfect forward secrecy"}
	}
	for _, k := range keys {
		v, ok := r.get(section, "", k, false)
		if !ok {
			continue
		}
		if !ike && (squash(v.text) == "none" || squash(v.text) == "disabled") {
			return
		}
		if g, ok := normGroup(v.text); ok {
			p.DHGroup = g
		} else {
			r.bad(v, "Diffie-Hellman group", "want a group of 2, 5, 14–24, like \"Group 14\"")
		}
		return
	}
	r.get(section, "", keys[0], true) // reports it missing
}

func titleCase(key string) string {
	words := strings.Fields(key)
	for i, w := range words {
		switch w {
		case "ike", "ip", "asn", "dpd", "mtu", "tcp", "mss":
			words[i] = strings.ToUpper(w)
			continue
		}
		parts := strings.Split(w, "-")
		for j, p := range parts {
			if p != "" {
				parts[j] = strings.ToUpper(p[:1]) + p[1:]
			}
		}
		words[i] = strings.Join(parts, "-")
	}
	return strings.Join(words, " ")
}

// clip shortens a value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
