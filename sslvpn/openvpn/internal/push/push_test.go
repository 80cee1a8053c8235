package push

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildParseReply(t *testing.T) {
	opts := []string{"route 10.50.0.0 255.255.255.0", "topology subnet", "ifconfig 10.8.0.2 255.255.255.0", "peer-id 3"}
	msgs, err := BuildReply(opts)
	if err != nil {
		t.Fatal(err)
	}
	want := "PUSH_REPLY,route 10.50.0.0 255.255.255.0,topology subnet,ifconfig 10.8.0.2 255.255.255.0,peer-id 3"
	if len(msgs) != 1 || msgs[0] != want {
		t.Fatalf("BuildReply = %q", msgs)
	}
	back, cont, err := ParseReply(msgs[0])
	if err != nil || cont != 0 {
		t.Fatal(err, cont)
	}
	if diff := cmp.Diff(back, opts); diff != "" {
		t.Errorf("(-got +want)\n%s", diff)
	}
}

func TestBuildReplySplits(t *testing.T) {
	var opts []string
	for i := 0; i < 100; i++ {
		opts = append(opts, fmt.Sprintf("route 10.%d.0.0 255.255.0.0", i))
	}
	msgs, err := BuildReply(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 3 {
		t.Fatalf("%d messages for %d options", len(msgs), len(opts))
	}
	var all []string
	for i, m := range msgs {
		if len(m) >= 1024 {
			t.Errorf("message %d is %d bytes", i, len(m))
		}
		o, cont, err := ParseReply(m)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 2}[i == len(msgs)-1]; cont != want {
			t.Errorf("message %d: continuation %d, want %d", i, cont, want)
		}
		all = append(all, o...)
	}
	if diff := cmp.Diff(all, opts); diff != "" {
		t.Errorf("(-got +want)\n%s", diff)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []string{"", "a,b", "x\x00", "line\nbreak", strings.Repeat("x", 600)} {
		if _, err := BuildReply([]string{o}); !errors.Is(err, ErrBadOption) {
			t.Errorf("BuildReply(%q) = %v", o, err)
		}
	}
	for _, m := range []string{"PUSH_REPLYX", "AUTH_FAILED", "PUSH_REPLY,push-continuation 9", "PUSH_REPLY,,"} {
		if _, _, err := ParseReply(m); !errors.Is(err, ErrBadOption) {
			t.Errorf("ParseReply(%q) = %v", m, err)
		}
	}
}

func TestFormatting(t *testing.T) {
	for bits, want := range map[int]string{0: "0.0.0.0", 8: "255.0.0.0", 24: "255.255.255.0", 30: "255.255.255.252", 32: "255.255.255.255"} {
		if got := Netmask(bits); got != want {
			t.Errorf("Netmask(%d) = %s", bits, got)
		}
	}
	if got := Route(netip.MustParsePrefix("10.50.0.7/24")); got != "route 10.50.0.0 255.255.255.0" {
		t.Errorf("Route = %s", got)
	}
	if got := Route(netip.MustParsePrefix("fd00::/64")); got != "route-ipv6 fd00::/64" {
		t.Errorf("Route = %s", got)
	}
}

func TestSplitMessages(t *testing.T) {
	for in, want := range map[string][]string{
		"PUSH_REQUEST\x00": {"PUSH_REQUEST"},
		"EXIT":             {"EXIT"},
		"A\x00\x00B\x00":   {"A", "B"},
		"\x00":             nil,
		"":                 nil,
	} {
		if got := SplitMessages([]byte(in)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("SplitMessages(%q) = %q, want %q", in, got, want)
		}
	}
}
