package config

import (
	"strings"
	"testing"
)

// FuzzParseCommands feeds arbitrary text to the set-line parser. It must never panic, and whatever it accepts must
// render to lines that parse back to the same configuration.
func FuzzParseCommands(f *testing.F) {
	f.Add(richLines)
	f.Add("set system interfaces eth0 address 192.0.2.1/24\ndelete system interfaces eth0 address 192.0.2.1/24")
	f.Add(`set sslvpn servers "a b" description "x\ny"`)
	f.Fuzz(func(t *testing.T, text string) {
		c := &Config{}
		if err := c.ParseCommands(text); err != nil {
			return
		}
		back := &Config{}
		if err := back.ParseCommands(strings.Join(c.Commands(), "\n")); err != nil {
			t.Fatalf("rendered lines do not parse: %v\n%s", err, strings.Join(c.Commands(), "\n"))
		}
		if !Equal(back, c) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", strings.Join(c.Commands(), "\n"), strings.Join(back.Commands(), "\n"))
		}
		_ = c.Tree()
		_ = Validate(c.WithDefaults())
	})
}

// FuzzUnmarshal feeds arbitrary bytes to the JSON loader: never a panic, and an accepted config survives
// validation and rendering.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"system":{"host-name":"gw"}}`))
	f.Add(defaultJSON)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Unmarshal(data)
		if err != nil {
			return
		}
		_ = Validate(c.WithDefaults())
		_ = c.Commands()
		_ = c.Tree()
	})
}
