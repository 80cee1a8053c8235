package config

import (
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"toride/ike"
	"toride/sslvpn"
)

// Problem is one thing wrong with a configuration: where, what value, what is wrong, and how to fix it.
type Problem struct {
	Path    string `json:"path"`    // dotted path, e.g. sslvpn.servers.main.pool
	Value   string `json:"value"`   // the offending value as the admin wrote it ("" when missing)
	Message string `json:"message"` // what is wrong
	Fix     string `json:"fix"`     // what to do about it
}

func (p Problem) String() string {
	s := p.Path + ": " + p.Message
	if p.Fix != "" {
		s += "; " + p.Fix
	}
	return s
}

// Problems is every problem a validation found. As an error it lists them one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d configuration problem(s):\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Validate checks an effective configuration (WithDefaults applied) and returns every problem it has, nil when it
// is good. The order is stable: the schema's checks, then the system, the IPsec connections' shape (their tunnels
// and preferred tunnel), the SSL-VPN, users, PKI and API, and last the IPsec engine's rules for the connections.
func Validate(c *Config) Problems {
	v := &validator{}
	v.schema(reflect.ValueOf(c).Elem(), nil)
	ipsecShape, ipsecRules := c.IPsec.Problems(ike.ValidateOptions{})
	v.system(c)
	v.ipsec(ipsecShape)
	v.sslvpn(c)
	v.users(c)
	v.pki(c)
	v.api(c)
	v.ipsec(ipsecRules)
	if len(v.ps) == 0 {
		return nil
	}
	return v.ps
}

type validator struct{ ps Problems }

func (v *validator) add(path []string, value any, fix string, format string, args ...any) {
	v.ps = append(v.ps, Problem{Path: strings.Join(path, "."), Value: fmt.Sprint(value), Message: fmt.Sprintf(format, args...), Fix: fix})
}

func p(parts ...string) []string { return parts }

// schema checks what set lines check at once but JSON loaded from disk or the API could bypass: keys, enums and
// ranges.
func (v *validator) schema(rv reflect.Value, path []string) {
	for _, f := range fieldsOf(rv.Type()) {
		fv := rv.Field(f.index)
		fp := append(slices.Clip(path), f.name)
		switch kindOf(f.typ) {
		case Container:
			v.schema(fv, fp)
		case Tag:
			for _, k := range mapKeys(fv) {
				kp := append(slices.Clip(fp), k)
				if err := checkKey(f.key, k); err != nil {
					v.add(kp, k, "rename the entry", "%v", err)
				}
				if ev := fv.MapIndex(reflect.ValueOf(k)); !ev.IsNil() {
					v.schema(ev.Elem(), kp)
				}
			}
		case Leaf:
			if !fv.IsZero() {
				v.leaf(f, fv, fp)
			}
		case Multi:
			for j := range fv.Len() {
				v.leaf(f, fv.Index(j), fp)
			}
		}
	}
}

func (v *validator) leaf(f field, fv reflect.Value, path []string) {
	s := formatValue(fv)
	if len(f.enum) > 0 && !slices.Contains(f.enum, s) {
		v.add(path, s, "use one of "+strings.Join(f.enum, ", "), "%q is not an allowed value", s)
	}
	if f.ranged {
		var n int64
		if tn, ok := textNumber(fv); ok {
			n = tn
		} else {
			switch fv.Kind() {
			case reflect.Int, reflect.Int32, reflect.Int64:
				n = fv.Int()
			case reflect.Uint16, reflect.Uint32, reflect.Uint64:
				n = int64(fv.Uint())
			}
		}
		if n < f.lo || n > f.hi {
			v.add(path, s, fmt.Sprintf("use a number from %d to %d", f.lo, f.hi), "%s is out of range", s)
		}
	}
}

var (
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

func (v *validator) system(c *Config) {
	s := &c.System
	if !validHostName(s.HostName) || strings.Contains(s.HostName, ".") {
		v.add(p("system", "host-name"), s.HostName, "use letters, digits and '-', at most 63, e.g. branch-gw1",
			"%q is not a host name", s.HostName)
	}
	if s.DomainName != "" && !validHostName(s.DomainName) {
		v.add(p("system", "domain-name"), s.DomainName, "use a DNS domain such as example.com", "%q is not a domain name", s.DomainName)
	}
	type owner struct {
		ifname string
		pfx    netip.Prefix
	}
	var seen []owner
	for _, name := range sortedKeys(s.Interfaces) {
		ifc := s.Interfaces[name]
		for _, a := range ifc.Addresses {
			path := p("system", "interfaces", name, "address")
			if a.Addr().Is4() && a.Bits() < 31 && (a.Addr() == a.Masked().Addr() || a.Addr() == lastAddr(a)) {
				v.add(path, a, "give the interface a host address inside the network, e.g. "+a.Masked().Addr().Next().String()+"/"+fmt.Sprint(a.Bits()),
					"%s is the network or broadcast address of its subnet", a)
				continue
			}
			for _, o := range seen {
				switch {
				case o.pfx.Addr() == a.Addr():
					v.add(path, a, "remove one of them", "%s is also on interface %s", a.Addr(), o.ifname)
				case o.pfx.Masked().Overlaps(a.Masked()) && o.ifname != name:
					v.add(path, a, "put each interface on its own network", "%s overlaps %s on interface %s", a.Masked(), o.pfx.Masked(), o.ifname)
				}
			}
			seen = append(seen, owner{name, a})
		}
	}
	for _, dst := range sortedKeys(s.StaticRoutes) {
		r := s.StaticRoutes[dst]
		path := p("system", "static-routes", dst, "next-hop")
		if !r.NextHop.IsValid() {
			v.add(path, "", "set system static-routes "+dst+" next-hop ADDRESS", "a static route needs a next hop")
			continue
		}
		onLink := false
		for _, o := range seen {
			onLink = onLink || (o.pfx.Masked().Contains(r.NextHop) && !s.Interfaces[o.ifname].Disable)
		}
		for _, ifc := range s.Interfaces {
			// A network that DHCP gives is known only when the lease comes: the route waits for it.
			onLink = onLink || (ifc.DHCP && !ifc.Disable)
		}
		if !onLink {
			v.add(path, r.NextHop, "use a gateway inside the network of an enabled interface, or add that interface's address",
				"%s is not inside any interface's network", r.NextHop)
		}
	}
	for i, d := range s.DNS.SearchDomains {
		if !validHostName(d) {
			v.add(p("system", "dns", "search-domain"), d, "use a DNS domain such as example.com", "search domain %d %q is not a domain name", i+1, d)
		}
	}
	for _, srv := range s.NTP.Servers {
		if _, err := netip.ParseAddr(srv); err != nil && !validHostName(srv) {
			v.add(p("system", "ntp", "server"), srv, "use a host name or an IP address", "%q is neither a host name nor an address", srv)
		}
	}
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(pfx netip.Prefix) netip.Addr {
	a := pfx.Masked().Addr().As4()
	host := uint32(1)<<(32-pfx.Bits()) - 1
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// ipsec reports problems of the IPsec engine's own validation, which already name their fields as set lines do
// below the ipsec section.
func (v *validator) ipsec(fes []*ike.FieldError) {
	for _, fe := range fes {
		v.ps = append(v.ps, Problem{Path: "ipsec." + fe.Field, Value: fe.Value, Message: fe.Problem, Fix: fe.Fix})
	}
}

// sslvpn runs the SSL-VPN's own validation, telling it what the rest of the configuration uses: the IPsec
// networks no pool may overlap, the interfaces' networks, the CAs and certificates its servers may name.
func (v *validator) sslvpn(c *Config) {
	o := sslvpn.ValidateOptions{Path: "sslvpn", CAs: map[string]bool{}, Certificates: sortedKeys(c.PKI.Certificates)}
	for _, name := range sortedKeys(c.IPsec.Connections) {
		for _, n := range c.IPsec.Connections[name].RemoteNetworks {
			o.Routed = append(o.Routed, sslvpn.UsedNetwork{What: "ipsec.connections." + name + ".remote-network " + n.String(), Prefix: n})
		}
		for _, n := range c.IPsec.Connections[name].LocalNetworks {
			o.Routed = append(o.Routed, sslvpn.UsedNetwork{What: "ipsec.connections." + name + ".local-network " + n.String(), Prefix: n})
		}
	}
	for _, ifname := range sortedKeys(c.System.Interfaces) {
		for _, a := range c.System.Interfaces[ifname].Addresses {
			o.Interfaces = append(o.Interfaces, sslvpn.InterfaceNetwork{Interface: ifname, Prefix: a})
		}
	}
	for name, ca := range c.PKI.CAs {
		if ca != nil {
			o.CAs[name] = ca.PrivateKey != ""
		}
	}
	for _, fe := range c.SSLVPN.Validate(o) {
		v.ps = append(v.ps, Problem{Path: fe.Field, Value: fe.Value, Message: fe.Problem, Fix: fe.Fix})
	}
}

func (v *validator) users(c *Config) {
	for _, name := range sortedKeys(c.Users) {
		u := c.Users[name]
		if u.OTPKey != "" && !isTOTPKey(string(u.OTPKey)) {
			v.add(p("users", name, "otp-key"), "(hidden)", "issue the key through the API (POST …/otp)", "not a base32 TOTP key of at least 128 bits")
		}
		if u.PasswordHash != "" && !strings.HasPrefix(string(u.PasswordHash), "$2") {
			v.add(p("users", name, "password-hash"), "(hidden)", "set the password with `set users "+name+" password-hash` from `toride generate password-hash`",
				"not a bcrypt hash")
		}
	}
}

// isTOTPKey reports whether k is a TOTP key as authenticator apps read it: base32, at least the 128 bits RFC 4226
// asks for.
func isTOTPKey(k string) bool {
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(k, "="))
	return err == nil && len(raw) >= 16
}

func (v *validator) pki(c *Config) {
	for _, name := range sortedKeys(c.PKI.CAs) {
		ca := c.PKI.CAs[name]
		base := p("pki", "ca", name)
		cert := v.certificate(append(slices.Clip(base), "certificate"), ca.Certificate)
		if cert != nil && !cert.IsCA {
			v.add(append(slices.Clip(base), "certificate"), cert.Subject.String(), "use a CA certificate (basic constraints CA:TRUE)", "not a CA certificate")
		}
		if ca.PrivateKey != "" {
			v.privateKey(append(slices.Clip(base), "private-key"), ca.PrivateKey, cert)
		}
		if ca.CRL != "" {
			block, _ := pem.Decode([]byte(ca.CRL))
			if block == nil || block.Type != "X509 CRL" {
				v.add(append(slices.Clip(base), "crl"), "", "load the CRL through the API or `toride load crl`, which accept PEM or DER", "not a PEM X509 CRL")
			} else if crl, err := x509.ParseRevocationList(block.Bytes); err != nil {
				v.add(append(slices.Clip(base), "crl"), "", "load a valid CRL", "cannot parse the CRL: %v", err)
			} else if cert != nil {
				if err := crl.CheckSignatureFrom(cert); err != nil {
					v.add(append(slices.Clip(base), "crl"), crl.Issuer.String(), "load the CRL issued by this CA", "the CRL is not signed by this CA: %v", err)
				}
			}
		}
	}
	for _, name := range sortedKeys(c.PKI.Certificates) {
		ce := c.PKI.Certificates[name]
		base := p("pki", "certificates", name)
		cert := v.certificate(append(slices.Clip(base), "certificate"), ce.Certificate)
		if ce.PrivateKey == "" {
			v.add(append(slices.Clip(base), "private-key"), "", "set the certificate's private key in PEM", "missing")
		} else {
			v.privateKey(append(slices.Clip(base), "private-key"), ce.PrivateKey, cert)
		}
	}
}

func (v *validator) certificate(path []string, text string) *x509.Certificate {
	if text == "" {
		v.add(path, "", "set the certificate in PEM", "missing")
		return nil
	}
	block, _ := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" {
		v.add(path, "", "give a PEM block starting with -----BEGIN CERTIFICATE-----", "not a PEM certificate")
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		v.add(path, "", "give a valid X.509 certificate", "cannot parse the certificate: %v", err)
		return nil
	}
	return cert
}

func (v *validator) privateKey(path []string, text Secret, cert *x509.Certificate) {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		v.add(path, "(hidden)", "give a PEM private key", "not PEM")
		return
	}
	key, err := parsePrivateKey(block.Bytes)
	if err != nil {
		v.add(path, "(hidden)", "give a PKCS#8, PKCS#1 or EC private key in PEM", "cannot parse the key: %v", err)
		return
	}
	if cert == nil {
		return
	}
	pub, ok := key.(interface{ Public() any })
	if !ok {
		return
	}
	if eq, ok := pub.Public().(interface{ Equal(any) bool }); ok && !eq.Equal(cert.PublicKey) {
		v.add(path, "(hidden)", "give the key that belongs to the certificate", "the private key does not match the certificate")
	}
}

func parsePrivateKey(der []byte) (any, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return x509.ParseECPrivateKey(der)
}

func (v *validator) api(c *Config) {
	h := &c.API.HTTPS
	if h.ListenAddress.IsValid() && len(c.API.Keys) == 0 {
		v.add(p("api", "https", "listen-address"), h.ListenAddress, "add a key with `toride generate api-key NAME`, or delete api https",
			"HTTPS is on but no API key would be accepted")
	}
	if h.Certificate != "" && c.PKI.Certificates[h.Certificate] == nil {
		v.add(p("api", "https", "certificate"), h.Certificate, "use one of: "+strings.Join(sortedKeys(c.PKI.Certificates), ", "), "no pki certificate %q", h.Certificate)
	}
	for _, name := range sortedKeys(c.API.Keys) {
		if k := c.API.Keys[name].KeyHash; !hexSHA256.MatchString(string(k)) {
			v.add(p("api", "keys", name, "key-sha256"), "(hidden)", "use `toride generate api-key "+name+"`, which sets it", "not 64 lowercase hex digits")
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
