package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// secretLines sets every secret leaf of the schema, each to a value no other part of the configuration holds.
const secretLines = `
set system host-name 'gw'
set ipsec connections aws tunnels tunnel1 pre-shared-key 'clear-psk-1'
set users alice password-hash 'clear-hash-alice'
set users alice otp-key 'clear-otp-alice'
set pki ca users certificate 'cert-users'
set pki ca users private-key 'clear-ca-key'
set pki certificates web certificate 'cert-web'
set pki certificates web private-key 'clear-web-key'
set api keys ops key-sha256 'clear-api-hash'
`

var secretValues = []string{"clear-psk-1", "clear-hash-alice", "clear-otp-alice", "clear-ca-key", "clear-web-key", "clear-api-hash"}

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, v := range secretValues {
		if strings.Contains(text, v) {
			t.Errorf("%s shows the secret %q:\n%s", what, v, text)
		}
	}
}

func TestMapSecretsVisitsEverySecretLeaf(t *testing.T) {
	c := mustParse(t, secretLines)
	var got []string
	c.MapSecrets(func(path []string, v Secret) Secret {
		got = append(got, strings.Join(path, " ")+"="+string(v))
		return v
	})
	want := []string{
		"ipsec connections aws tunnels tunnel1 pre-shared-key=clear-psk-1",
		"users alice password-hash=clear-hash-alice",
		"users alice otp-key=clear-otp-alice",
		"pki ca users private-key=clear-ca-key",
		"pki certificates web private-key=clear-web-key",
		"api keys ops key-sha256=clear-api-hash",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("secret leaves (-got +want):\n%s", diff)
	}
	for _, path := range [][]string{{"ipsec", "connections", "aws", "tunnels", "tunnel1", "pre-shared-key"}, {"users", "alice", "otp-key"}, {"api", "keys", "ops", "key-sha256"}} {
		if n, err := c.Describe(path); err != nil || !n.Secret {
			t.Errorf("Describe(%v).Secret = false (%v); the shell would show its value", path, err)
		}
	}
	if n, _ := c.Describe([]string{"pki", "ca", "users", "certificate"}); n.Secret {
		t.Error("a certificate is marked secret")
	}
}

func TestRedactEveryForm(t *testing.T) {
	c := mustParse(t, secretLines)
	r := Redact(c)
	j, _ := Marshal(r)
	for what, text := range map[string]string{"JSON": string(j), "set lines": strings.Join(r.Commands(), "\n"), "tree": r.Tree()} {
		assertNoSecret(t, what, text)
		if got := strings.Count(text, Placeholder); got != len(secretValues) {
			t.Errorf("%s shows %d placeholders, want %d:\n%s", what, got, len(secretValues), text)
		}
	}
	if !strings.Contains(strings.Join(r.Commands(), "\n"), "set ipsec connections aws tunnels tunnel1 pre-shared-key '****'") {
		t.Errorf("redacted set lines:\n%s", strings.Join(r.Commands(), "\n"))
	}
	if c.IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey != "clear-psk-1" {
		t.Fatal("Redact changed the configuration it was given")
	}
}

// TestSecretNeverPrints: a secret that reaches fmt or slog by mistake (a log line, an error, a validation
// problem) prints as the placeholder, whatever the verb or handler.
func TestSecretNeverPrints(t *testing.T) {
	c := mustParse(t, secretLines)
	tn := c.IPsec.Connections["aws"].Tunnels["tunnel1"]
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
		fmt.Fprintf(&out, verb+"\n", tn.PreSharedKey)
		fmt.Fprintf(&out, verb+"\n", tn)
	}
	fmt.Fprintln(&out, c.Users["alice"], *c.PKI.CAs["users"], c.API.Keys)
	slog.New(slog.NewTextHandler(&out, nil)).Info("text", "psk", tn.PreSharedKey, "key", c.PKI.CAs["users"].PrivateKey)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("json", "psk", tn.PreSharedKey, "hash", c.API.Keys["ops"].KeyHash)
	assertNoSecret(t, "fmt and slog", out.String())
	if !strings.Contains(out.String(), Placeholder) {
		t.Fatalf("no placeholder printed:\n%s", out.String())
	}
	// JSON is the stored form: it keeps the value (the store seals it, outputs redact it).
	if b, _ := json.Marshal(tn); !bytes.Contains(b, []byte("clear-psk-1")) {
		t.Fatalf("JSON lost the value: %s", b)
	}
}

func TestDiffHidesSecretsButShowsTheirChange(t *testing.T) {
	a := mustParse(t, secretLines)
	b := a.Clone()
	b.IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey = "new-clear-psk"
	b.System.HostName = "gw2"
	got := Diff(a, b)
	want := []string{
		"- set system host-name 'gw'",
		"- set ipsec connections aws tunnels tunnel1 pre-shared-key '****'",
		"+ set system host-name 'gw2'",
		"+ set ipsec connections aws tunnels tunnel1 pre-shared-key '****'",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("diff (-got +want):\n%s", diff)
	}
	assertNoSecret(t, "diff", strings.Join(Diff(&Config{}, a), "\n"))
}

func TestSetRefusesThePlaceholder(t *testing.T) {
	c := mustParse(t, secretLines)
	err := c.Apply("set ipsec connections aws tunnels tunnel1 pre-shared-key '****'")
	var pe *PathError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "ipsec connections aws tunnels tunnel1 pre-shared-key") ||
		!strings.Contains(err.Error(), "leave this line out to keep the one set") {
		t.Fatalf("set pre-shared-key **** = %v; want a path error naming the field and the fix", err)
	}
	if c.IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey != "clear-psk-1" {
		t.Fatal("the placeholder overwrote the key")
	}
	// Only secrets: a description may well be four stars.
	if err := c.Apply("set ipsec connections aws description '****'"); err != nil {
		t.Fatal(err)
	}
}

func TestKeepSecretsRoundTrip(t *testing.T) {
	old := mustParse(t, secretLines)
	// An admin reads the redacted configuration, changes the host name and one key, and puts it back.
	back := Redact(old)
	back.System.HostName = "gw2"
	back.API.Keys["ops"].KeyHash = "new-api-hash"
	if err := KeepSecrets(back, old); err != nil {
		t.Fatal(err)
	}
	want := old.Clone()
	want.System.HostName = "gw2"
	want.API.Keys["ops"].KeyHash = "new-api-hash"
	if diff := cmp.Diff(back, want, cmpNetip); diff != "" {
		t.Fatalf("after the round trip (-got +want):\n%s", diff)
	}
	// A placeholder where there is nothing to keep is refused, naming the place.
	add := Redact(old)
	add.Users["bob"] = &User{PasswordHash: Placeholder}
	err := KeepSecrets(add, old)
	var pe *PathError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "users bob password-hash") {
		t.Fatalf("KeepSecrets with a new placeholder = %v", err)
	}
}
