package config

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testdata/config-9b9ae7c.json was written by the code of commit 9b9ae7c, which had the schema's own copies of the
// components' types, from a configuration that sets every leaf; testdata/config-9b9ae7c.commands is that
// configuration's set lines as the same code rendered them. A config.json on disk must load to the same
// configuration, and be written back byte for byte.
func TestConfigJSONOfEarlierVersionsLoads(t *testing.T) {
	data, err := os.ReadFile("testdata/config-9b9ae7c.json")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := os.ReadFile("testdata/config-9b9ae7c.commands")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(strings.Join(c.Commands(), "\n")+"\n", string(lines)); diff != "" {
		t.Errorf("set lines of the loaded file (-got +want):\n%s", diff)
	}
	back, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(back), string(data)); diff != "" {
		t.Errorf("the file written back differs (-got +want):\n%s", diff)
	}
	fromLines := &Config{}
	if err := fromLines.ParseCommands(string(lines)); err != nil {
		t.Fatal(err)
	}
	if !Equal(fromLines, c) {
		t.Error("the set lines do not parse to the configuration the file holds")
	}
}

// testdata/describe-9b9ae7c.txt is what describe said of some leaves at commit 9b9ae7c: the defaults, enums and
// secrecy an admin sees must not change when a type moves into its component. changedSince lists the defaults
// changed on purpose after that commit, each with its reason.
func TestDescribeOfEarlierVersions(t *testing.T) {
	changedSince := map[string]string{
		// Keepalive probes overlap: every 0.2 s, each answered within 1 s, for failover within 2 s.
		"timeout default=2 ": "timeout default=1 ",
	}
	data, err := os.ReadFile("testdata/describe-9b9ae7c.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := string(data)
	for was, is := range changedSince {
		if !strings.Contains(want, was) {
			t.Fatalf("the earlier description has no %q", was)
		}
		want = strings.Replace(want, was, is, 1)
	}
	var got strings.Builder
	for _, p := range [][]string{
		{"ipsec", "connections", "x", "tunnels", "t", "rekey-margin"}, {"ipsec", "connections", "x", "keepalive", "timeout"},
		{"ipsec", "connections", "x", "routing"}, {"ipsec", "connections", "x", "tunnels", "t", "ike", "lifetime"},
		{"ipsec", "connections", "x", "tunnels", "t", "nat-traversal"}, {"ipsec", "connections", "x", "tunnels", "t", "pre-shared-key"},
		{"ipsec", "connections", "x", "bgp", "remote-asn"}, {"ipsec", "connections", "x", "tunnels", "t", "dpd", "action"},
		{"sslvpn", "servers", "m", "address-hold"}, {"sslvpn", "servers", "m", "topology"}, {"sslvpn", "servers", "m", "cipher"},
		{"sslvpn", "servers", "m", "max-sessions"},
	} {
		n, err := (&Config{}).Describe(p)
		if err != nil {
			t.Fatal(err)
		}
		secret := "n"
		if n.Secret {
			secret = "y"
		}
		enum := ""
		for _, e := range n.Enum {
			enum += e + "|"
		}
		got.WriteString(p[len(p)-1] + " default=" + n.Default + " enum=" + enum + " secret=" + secret + "\n")
	}
	if diff := cmp.Diff(got.String(), want); diff != "" {
		t.Errorf("describe (-got +want):\n%s", diff)
	}
}
