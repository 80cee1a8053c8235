package config

import (
	"maps"
	"reflect"
	"slices"
	"strings"
)

// WithDefaults returns a copy of c with every unset leaf that has a default filled in: the effective configuration
// that validation and the components see. c itself is not changed.
func (c *Config) WithDefaults() *Config {
	e := c.Clone()
	fillDefaults(reflect.ValueOf(e).Elem())
	for _, conn := range e.IPsec.Connections {
		if conn.Failover.Preferred == "" && len(conn.Tunnels) > 0 {
			conn.Failover.Preferred = slices.Sorted(maps.Keys(conn.Tunnels))[0]
		}
		for _, t := range conn.Tunnels {
			t.IKE.fill(28800, []string{"aes256", "aes128"}, []string{"sha256", "sha1"}, []int{14, 2})
			t.ESP.fill(3600, []string{"aes256", "aes128"}, []string{"sha256", "sha1"}, []int{14, 2})
			if !t.KeepaliveTarget.IsValid() && t.InsideCIDR.IsValid() {
				// The cloud's end of the inside /30 is its first usable address.
				t.KeepaliveTarget = t.InsideCIDR.Masked().Addr().Next()
			}
		}
	}
	for _, s := range e.SSLVPN.Servers {
		if s.MaxSessions == 0 {
			s.MaxSessions = FlavorSessions(s.Flavor)
		}
		if s.MaxPerUser == 0 {
			s.MaxPerUser = min(DefaultUserSessions, s.MaxSessions)
		}
		if len(s.Ciphers) == 0 {
			s.Ciphers = []string{"aes256gcm", "aes128gcm", "chacha20poly1305", "aes256cbc", "aes128cbc"}
		}
	}
	return e
}

// DefaultUserSessions is how many sessions one user may hold when the server does not say (as ocserv's
// max-same-clients): a laptop and a phone, not a whole team on one account.
const DefaultUserSessions = 2

// FlavorSessions is the session limit a flavor stands for.
func FlavorSessions(flavor string) int {
	if flavor == "large" {
		return 255
	}
	return 20
}

func (p *Phase) fill(lifetime int, enc, integ []string, dh []int) {
	if p.Lifetime == 0 {
		p.Lifetime = lifetime
	}
	if len(p.Encryption) == 0 {
		p.Encryption = enc
	}
	if len(p.Integrity) == 0 {
		p.Integrity = integ
	}
	if len(p.DHGroups) == 0 {
		p.DHGroups = dh
	}
}

func fillDefaults(v reflect.Value) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		switch kindOf(f.typ) {
		case Container:
			fillDefaults(fv)
		case Tag:
			for _, k := range fv.MapKeys() {
				fillDefaults(fv.MapIndex(k).Elem())
			}
		case Leaf:
			if f.def != "" && fv.IsZero() {
				nv, err := parseValue(f, f.typ, f.def)
				if err != nil {
					panic("config: bad default for " + f.name + ": " + err.Error()) // a schema bug, caught by tests
				}
				fv.Set(nv)
			}
		case Multi:
			if f.def != "" && fv.Len() == 0 {
				for _, w := range strings.Fields(f.def) {
					nv, err := parseValue(f, f.scalarT, w)
					if err != nil {
						panic("config: bad default for " + f.name + ": " + err.Error())
					}
					fv.Set(reflect.Append(fv, nv))
				}
			}
		}
	}
}
