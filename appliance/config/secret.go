package config

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
)

// Secret is the value of a secret leaf: a pre-shared key, a private key, a password or API key hash, a TOTP key.
// A leaf is secret by its type, so every output hides it the same way: fmt (every verb, %#v included) and slog
// print Placeholder, and a Problem's value or a log line that carries one by mistake does not leak it. JSON keeps
// the value (the store seals it at rest, the API redacts it with Redact); string(s) is the value itself.
type Secret string

// Placeholder is how a secret is shown. Set refuses it as a value; KeepSecrets reads it as "unchanged".
const Placeholder = "****"

// Format prints Placeholder whatever the verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Placeholder) }

// LogValue makes slog print Placeholder.
func (Secret) LogValue() slog.Value { return slog.StringValue(Placeholder) }

// isSecretType reports whether leaves of type t are secrets: string types that print as Placeholder, Secret and
// the components' own (ike.PSK).
func isSecretType(t reflect.Type) bool {
	if t.Kind() != reflect.String || !t.Implements(formatter) {
		return false
	}
	return fmt.Sprint(reflect.ValueOf("x").Convert(t).Interface()) == Placeholder
}

var formatter = reflect.TypeFor[fmt.Formatter]()

// MapSecrets calls fn for every secret leaf of c that is set, in schema order, with its path as set lines spell it
// (["ipsec", "connections", "aws", "tunnels", "tunnel1", "pre-shared-key"]), and stores what fn returns.
func (c *Config) MapSecrets(fn func(path []string, v Secret) Secret) {
	mapSecrets(reflect.ValueOf(c).Elem(), nil, fn)
}

func mapSecrets(v reflect.Value, path []string, fn func([]string, Secret) Secret) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		p := append(slices.Clip(path), f.name)
		switch {
		case f.secret:
			if s := Secret(fv.String()); s != "" {
				fv.SetString(string(fn(p, s)))
			}
		case kindOf(f.typ) == Container:
			mapSecrets(fv, p, fn)
		case kindOf(f.typ) == Tag:
			for _, k := range mapKeys(fv) {
				mapSecrets(fv.MapIndex(reflect.ValueOf(k)).Elem(), append(slices.Clip(p), k), fn)
			}
		}
	}
}

// Redact returns a copy of c with every secret that is set shown as Placeholder. Every output of a configuration
// (the API in each format, compare, the shell, an import's preview) goes through it unless an admin asked to see
// the secrets.
func Redact(c *Config) *Config {
	out := c.Clone()
	out.MapSecrets(func([]string, Secret) Secret { return Placeholder })
	return out
}

// KeepSecrets takes c, a configuration that came back from an admin, as a redacted configuration round trip: each
// secret given as Placeholder keeps the value old has at the same path. A placeholder where old has no secret is
// an error naming the path, since there is nothing to keep.
func KeepSecrets(c, old *Config) error {
	kept := map[string]Secret{}
	old.MapSecrets(func(path []string, v Secret) Secret {
		kept[strings.Join(path, " ")] = v
		return v
	})
	var missing []string
	c.MapSecrets(func(path []string, v Secret) Secret {
		if v != Placeholder {
			return v
		}
		if was, ok := kept[strings.Join(path, " ")]; ok {
			return was
		}
		missing = append(missing, strings.Join(path, " "))
		return v
	})
	if len(missing) > 0 {
		return &PathError{Msg: fmt.Sprintf("%s: %q stands for a hidden secret, but there is none here to keep; give the value itself",
			strings.Join(missing, ", "), Placeholder)}
	}
	return nil
}
