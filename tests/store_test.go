package tests

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/appliance/config"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

// TestTruncatedConfigStartsFromTheArchive: a config.json cut short (a disk that lied about a write) no longer
// stops torided: it comes up on the newest archive entry, keeps the broken file and says so in the status.
func TestTruncatedConfigStartsFromTheArchive(t *testing.T) {
	l := lab.New(t, "nsenter", "unshare")
	box := l.Namespace("box")
	state := t.TempDir()
	d := toridetest.Start(t, box, state)
	d.MustToride("set", "system", "host-name", "before-the-damage")
	d.MustToride("commit", "the last good commit")
	d.Proc.Stop()

	path := filepath.Join(state, "config", "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	broken := data[:len(data)/2]
	if err := os.WriteFile(path, broken, 0o600); err != nil {
		t.Fatal(err)
	}

	d = toridetest.Start(t, box, state)
	if got := d.Hostname(); got != "before-the-damage" {
		t.Fatalf("host name %q; want the newest archive entry's", got)
	}
	kept, _ := filepath.Glob(path + ".unreadable-*")
	if len(kept) != 1 {
		t.Fatalf("the truncated file is not kept: %v", kept)
	}
	if got, _ := os.ReadFile(kept[0]); !bytes.Equal(got, broken) {
		t.Fatal("the kept file is not the one found")
	}
	status := d.MustToride("show", "status")
	for _, want := range []string{`"config"`, `"degraded"`, "config.json cannot be read", kept[0], "started from archive revision 2"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	log := d.MustToride("show", "system", "commit")
	if !strings.Contains(log, "by found at start: config.json cannot be read") || !strings.Contains(log, "the last good commit") {
		t.Fatalf("commit log:\n%s", log)
	}
}

// TestSecretsSealedAtRestAndHidden: after a commit of a pre-shared key and an API key hash through the real
// daemon, no file of the state directory holds either in clear, no output shows them unless asked, the ask is
// logged, and they survive a restart.
func TestSecretsSealedAtRestAndHidden(t *testing.T) {
	l := lab.New(t, "unshare")
	box := l.Namespace("box")
	state := t.TempDir()
	d := toridetest.Start(t, box, state)
	const psk = "e2e.Sealed_PSK_4711"
	hash := strings.Repeat("c0ffee42", 8)
	ctx := lab.Within(t, time.Minute)
	err := d.API.Do(ctx, "POST", "/api/v1/config/commands", map[string]any{"commands": []string{
		"set ipsec connections lab disable",
		"set ipsec connections lab tunnels tunnel1 pre-shared-key " + psk,
		"set api keys ops key-sha256 " + hash,
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := d.MustToride("commit", "secrets"); !strings.Contains(out, "Committed revision 2") {
		t.Fatalf("commit said %q", out)
	}
	noClearSecrets := func() {
		t.Helper()
		err := filepath.WalkDir(state, func(path string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(data, []byte(psk)) || bytes.Contains(data, []byte(hash)) {
				t.Errorf("%s holds a secret in clear", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	noClearSecrets()

	hidden := func(what, out string) {
		t.Helper()
		if strings.Contains(out, psk) || strings.Contains(out, hash) || !strings.Contains(out, "****") {
			t.Errorf("%s does not hide the secrets:\n%s", what, out)
		}
	}
	var raw []byte
	for _, q := range []string{"", "?format=commands", "?format=tree", "?source=candidate"} {
		if err := d.API.Do(ctx, "GET", "/api/v1/config"+q, nil, &raw); err != nil {
			t.Fatal(err)
		}
		hidden("GET /api/v1/config"+q, string(raw))
	}
	var running config.Config
	if err := d.API.Do(ctx, "GET", "/api/v1/config", nil, &running); err != nil {
		t.Fatal(err)
	}
	if got := running.IPsec.Connections["lab"].Tunnels["tunnel1"].PreSharedKey; got != "****" {
		t.Fatalf("GET /api/v1/config pre-shared-key = %q, want ****", string(got))
	}
	hidden("show configuration", d.MustToride("show", "configuration"))
	hidden("show configuration commands", d.MustToride("show", "configuration", "commands"))
	d.MustToride("set", "ipsec", "connections", "lab", "tunnels", "tunnel1", "pre-shared-key", "changed.PSK_0815")
	diff := d.MustToride("compare")
	hidden("compare", diff)
	if strings.Contains(diff, "changed.PSK_0815") || !strings.Contains(diff, "+ set ipsec connections lab tunnels tunnel1 pre-shared-key '****'") {
		t.Fatalf("compare:\n%s", diff)
	}
	if _, err := d.Toride("set", "ipsec", "connections", "lab", "tunnels", "tunnel1", "pre-shared-key", "****"); err == nil ||
		!strings.Contains(err.Error(), "pre-shared-key") || !strings.Contains(err.Error(), "leave this line out") {
		t.Fatalf("set pre-shared-key ****: %v", err)
	}
	d.MustToride("discard")

	shown := d.MustToride("show", "configuration", "commands", "--show-secrets")
	if !strings.Contains(shown, "pre-shared-key '"+psk+"'") || !strings.Contains(shown, hash) {
		t.Fatalf("--show-secrets hides them:\n%s", shown)
	}
	if err := d.Proc.WaitOutput(lab.Within(t, 5*time.Second), "configuration secrets shown"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.Proc.Output(), psk) {
		t.Fatal("torided's log holds the pre-shared key")
	}

	d.Proc.Stop()
	d = toridetest.Start(t, box, state)
	if err := d.API.Do(context.Background(), "GET", "/api/v1/config?secrets=show", nil, &running); err != nil {
		t.Fatal(err)
	}
	if got := running.IPsec.Connections["lab"].Tunnels["tunnel1"].PreSharedKey; got != psk {
		t.Fatalf("after a restart the pre-shared key opens as %q", string(got))
	}
	noClearSecrets()
}
