package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	base := validConfig().FillDefaults()
	edit := func(f func(*Config)) Config {
		c := validConfig()
		f(&c)
		return c.FillDefaults()
	}
	type summary struct {
		Rebuild            bool
		Add, Remove        []string
		Policy             bool
		Announce, Withdraw []string
	}
	tests := []struct {
		name string
		old  Config
		next Config
		want summary
	}{
		{"same config: nothing", base, base, summary{}},
		{"from nothing: everything", Config{}, base, summary{Rebuild: true, Add: []string{"tunnel1", "tunnel2"}, Policy: true, Announce: []string{"10.1.0.0/24"}}},
		{"ASN changed: rebuild", base, edit(func(c *Config) { c.LocalASN = 65001 }),
			summary{Rebuild: true, Add: []string{"tunnel1", "tunnel2"}, Policy: true, Announce: []string{"10.1.0.0/24"}}},
		{"local preference: policy only", base, edit(func(c *Config) { c.Neighbors[0].LocalPreference = 50 }), summary{Policy: true}},
		{"prepend: policy only", base, edit(func(c *Config) { c.Neighbors[1].Prepend = 0 }), summary{Policy: true}},
		{"hold time: that session again", base, edit(func(c *Config) { c.Neighbors[1].HoldTime = 90 * time.Second }),
			summary{Add: []string{"tunnel2"}, Remove: []string{"tunnel2"}}},
		{"password: that session again", base, edit(func(c *Config) { c.Neighbors[0].Password = "k" }),
			summary{Add: []string{"tunnel1"}, Remove: []string{"tunnel1"}}},
		{"neighbor removed", base, edit(func(c *Config) { c.Neighbors = c.Neighbors[:1] }), summary{Remove: []string{"tunnel2"}, Policy: true}},
		{"networks changed", base, edit(func(c *Config) { c.Networks = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")} }),
			summary{Announce: []string{"10.9.0.0/16"}, Withdraw: []string{"10.1.0.0/24"}}},
	}
	names := func(ns []Neighbor) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return out
	}
	prefixes := func(ps []netip.Prefix) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.String())
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := diff(tt.old, tt.next)
			got := summary{p.rebuild, names(p.add), names(p.remove), p.policy, prefixes(p.announce), prefixes(p.withdraw)}
			if d := cmp.Diff(got, tt.want); d != "" {
				t.Errorf("plan (-got +want):\n%s", d)
			}
			if p.empty() != cmp.Equal(tt.want, summary{}) {
				t.Errorf("empty() = %v", p.empty())
			}
		})
	}
}
