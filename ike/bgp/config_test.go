package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func validConfig() Config {
	return Config{
		LocalASN: 65000,
		Neighbors: []Neighbor{
			{Name: "tunnel1", LocalAddress: netip.MustParseAddr("169.254.10.2"), PeerAddress: netip.MustParseAddr("169.254.10.1"), PeerASN: 64512, LocalPreference: 200},
			{Name: "tunnel2", LocalAddress: netip.MustParseAddr("169.254.11.2"), PeerAddress: netip.MustParseAddr("169.254.11.1"), PeerASN: 64512, Prepend: 2},
		},
		Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Config)
		fields []string // the fields named, in order
		says   string   // part of the first error
	}{
		{"valid", func(*Config) {}, nil, ""},
		{"local ASN 0", func(c *Config) { c.LocalASN = 0 }, []string{"local-asn"}, "1–4294967294"},
		{"peer ASN reserved", func(c *Config) { c.Neighbors[1].PeerASN = 4294967295 }, []string{"neighbors.tunnel2.peer-asn"}, "4294967295"},
		{"hold time 2 s", func(c *Config) { c.Neighbors[0].HoldTime = 2 * time.Second }, []string{"neighbors.tunnel1.hold-time"}, "3–65535"},
		{"hold time too long", func(c *Config) { c.Neighbors[0].HoldTime = 65536 * time.Second }, []string{"neighbors.tunnel1.hold-time"}, "3–65535"},
		{"hold time fraction", func(c *Config) { c.Neighbors[0].HoldTime = 3500 * time.Millisecond }, []string{"neighbors.tunnel1.hold-time"}, "whole seconds"},
		{"hold time 65535 s", func(c *Config) { c.Neighbors[0].HoldTime = 65535 * time.Second }, nil, ""},
		{"no local address", func(c *Config) { c.Neighbors[0].LocalAddress = netip.Addr{} }, []string{"neighbors.tunnel1.local-address"}, "bind"},
		{"families differ", func(c *Config) { c.Neighbors[0].PeerAddress = netip.MustParseAddr("fd00::1") }, []string{"neighbors.tunnel1.peer-address"}, "families"},
		{"same peer twice", func(c *Config) { c.Neighbors[1].PeerAddress = c.Neighbors[0].PeerAddress }, []string{"neighbors.tunnel2.peer-address"}, "tunnel1"},
		{"same name twice", func(c *Config) { c.Neighbors[1].Name = "tunnel1" }, []string{"neighbors.tunnel1.name"}, "two neighbors"},
		{"no name", func(c *Config) { c.Neighbors[1].Name = "" }, []string{"neighbors[1].name"}, "name"},
		{"prepend 11", func(c *Config) { c.Neighbors[1].Prepend = 11 }, []string{"neighbors.tunnel2.prepend"}, "0–10"},
		{"long password", func(c *Config) { c.Neighbors[0].Password = Password(strings.Repeat("k", 81)) }, []string{"neighbors.tunnel1.password"}, "80"},
		{"host bits", func(c *Config) { c.Networks[0] = netip.MustParsePrefix("10.1.0.1/24") }, []string{"networks[0]"}, "10.1.0.0/24"},
		{"router id v6", func(c *Config) { c.RouterID = netip.MustParseAddr("fd00::1") }, []string{"router-id"}, "IPv4"},
		{"every problem at once", func(c *Config) { c.LocalASN = 0; c.Neighbors[1].Prepend = -1 }, []string{"local-asn", "neighbors.tunnel2.prepend"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want a *ValidationError wrapping ErrInvalidConfig", err)
			}
			var fields []string
			for _, fe := range ve.Errors {
				fields = append(fields, fe.Field)
				if fe.Fix == "" || fe.Value == "" {
					t.Errorf("%s: no value or no fix: %+v", fe.Field, *fe)
				}
			}
			if diff := cmp.Diff(fields, tt.fields); diff != "" {
				t.Errorf("fields (-got +want):\n%s", diff)
			}
			if !strings.Contains(ve.Errors[0].Error(), tt.says) {
				t.Errorf("%q does not say %q", ve.Errors[0].Error(), tt.says)
			}
		})
	}
}

func TestFillDefaults(t *testing.T) {
	c := validConfig()
	got := c.FillDefaults()
	if got.Neighbors[0].HoldTime != 30*time.Second || got.Neighbors[1].LocalPreference != 100 || got.Neighbors[0].LocalPreference != 200 {
		t.Errorf("defaults not filled: %+v", got.Neighbors)
	}
	if got.RouterID != netip.MustParseAddr("169.254.10.2") {
		t.Errorf("router ID = %s, want the first local address", got.RouterID)
	}
	if c.Neighbors[0].HoldTime != 0 {
		t.Error("FillDefaults changed its receiver's neighbors")
	}
}

// TestPasswordNeverPrinted: the MD5 key does not appear in fmt output of any verb, nor in slog's text or JSON.
func TestPasswordNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-md5-key"
	c := validConfig()
	c.Neighbors[0].Password = secret
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, verb+"\n", c)
		fmt.Fprintf(&out, verb+"\n", c.Neighbors[0].Password)
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "config", c, "neighbor", c.Neighbors[0], "password", c.Neighbors[0].Password)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "config", c, "password", c.Neighbors[0].Password)
	if strings.Contains(out.String(), secret) || strings.Contains(out.String(), fmt.Sprintf("%x", secret)) {
		t.Fatalf("the password was printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "****") {
		t.Fatalf("the password is not shown as ****:\n%s", out.String())
	}
}
