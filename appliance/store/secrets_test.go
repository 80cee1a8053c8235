package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"toride/appliance/config"
)

// testCodec seals like the appliance's codec (bound to the path, an older clear form reported as not current,
// never sealing twice) without the crypto: "sealed:" + base64(path NUL value).
type testCodec struct{}

func (testCodec) Seal(path []string, value string) string {
	if strings.HasPrefix(value, "sealed:") {
		return value
	}
	return "sealed:" + base64.StdEncoding.EncodeToString([]byte(strings.Join(path, " ")+"\x00"+value))
}

func (testCodec) Open(path []string, stored string) (string, bool, error) {
	b64, ok := strings.CutPrefix(stored, "sealed:")
	if !ok {
		return stored, false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	where, value, _ := strings.Cut(string(raw), "\x00")
	if err != nil || where != strings.Join(path, " ") {
		return stored, true, errors.New("does not open here")
	}
	return value, true, nil
}

const testPSK = "Clear.PSK_in_the_test"

// setPSK sets a connection that validates, with psk as its tunnel's pre-shared key.
func setPSK(c *config.Config, psk string) error {
	return c.ParseCommands(`
set ipsec connections aws local-network 10.1.0.0/16
set ipsec connections aws remote-network 10.2.0.0/16
set ipsec connections aws tunnels tunnel1 local-address 198.51.100.2
set ipsec connections aws tunnels tunnel1 remote-address 203.0.113.10
set ipsec connections aws tunnels tunnel1 inside-cidr 169.254.10.0/30
set ipsec connections aws tunnels tunnel1 pre-shared-key ` + config.Quote(psk))
}

// filesHolding returns the files under dir whose bytes contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(s)) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) openWith(codec SecretCodec) {
	f.t.Helper()
	def := &config.Config{}
	def.System.HostName = "default"
	s, err := Open(Options{Dir: f.dir, Applier: f.app, Default: def, Clock: f.clock, ArchiveSize: 5, Secrets: codec})
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
	f.t.Cleanup(s.Close)
	if err := s.Boot(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func newSealedFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), clock: &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}, app: &recordingApplier{}}
	f.openWith(testCodec{})
	return f
}

// TestSecretsAreSealedInEveryFile: a committed secret is in no file of the state directory in clear, yet the
// running configuration, the archive and the next start all have its value.
func TestSecretsAreSealedInEveryFile(t *testing.T) {
	f := newSealedFixture(t)
	if err := f.s.Edit(func(c *config.Config) error { return setPSK(c, testPSK) }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Commit(context.Background(), CommitRequest{Author: "tester"}); err != nil {
		t.Fatal(err)
	}
	f.mustCommitHost("after", 0)
	if got := filesHolding(t, f.dir, testPSK); len(got) != 0 {
		t.Fatalf("the secret is in clear in %v", got)
	}
	if got := filesHolding(t, f.dir, "sealed:"); len(got) != 3 {
		t.Fatalf("sealed values are in %v; want config.json and both archive entries", got)
	}
	psk := func(c *config.Config) string {
		if cn := c.IPsec.Connections["aws"]; cn != nil {
			return string(cn.Tunnels["tunnel1"].PreSharedKey)
		}
		return ""
	}
	if psk(f.s.Running()) != testPSK {
		t.Fatal("the running configuration does not hold the value")
	}
	if c, _, err := f.s.Revision(1); err != nil || psk(c) != testPSK {
		t.Fatalf("archive entry 1 does not open: %v", err)
	}
	f.s.Close()
	f.openWith(testCodec{})
	if psk(f.s.Running()) != testPSK || len(f.s.Notices()) != 0 {
		t.Fatalf("after a restart: notices %q", f.s.Notices())
	}
	if _, err := f.s.Rollback(context.Background(), 2, "tester"); err != nil {
		t.Fatal(err)
	}
	if psk(f.s.Running()) != "" || len(filesHolding(t, f.dir, testPSK)) != 0 {
		t.Fatal("rollback went wrong")
	}
}

// TestClearSecretsOfAnOlderVersionAreSealedAtStart: a state directory written before secrets were sealed (clear
// in config.json and in the archive) loads, and every file holds them sealed before the first commit.
func TestClearSecretsOfAnOlderVersionAreSealedAtStart(t *testing.T) {
	f := newFixture(t) // no codec: the older version
	if err := f.s.Edit(func(c *config.Config) error { return setPSK(c, testPSK) }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Commit(context.Background(), CommitRequest{Author: "tester"}); err != nil {
		t.Fatal(err)
	}
	f.mustCommitHost("later", 0)
	f.s.Close()
	if got := filesHolding(t, f.dir, testPSK); len(got) != 3 {
		t.Fatalf("the older version's files: %v", got)
	}
	before := f.s.Commits()

	f.openWith(testCodec{})
	if got := filesHolding(t, f.dir, testPSK); len(got) != 0 {
		t.Fatalf("still in clear after the start: %v", got)
	}
	if f.s.Running().IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey != testPSK || f.s.Running().System.HostName != "later" {
		t.Fatal("the running configuration changed")
	}
	if len(f.s.Notices()) != 0 {
		t.Fatalf("notices: %q", f.s.Notices())
	}
	if after := f.s.Commits(); len(after) != len(before) || after[0] != before[0] {
		t.Fatalf("sealing changed the history: %+v, was %+v", after, before)
	}
	f.s.Close()
	f.openWith(testCodec{})
	if c, _, err := f.s.Revision(1); err != nil || c.IPsec.Connections["aws"].Tunnels["tunnel1"].PreSharedKey != testPSK {
		t.Fatalf("a resealed archive entry does not open: %v", err)
	}
}

// TestSecretThatDoesNotOpenIsKept: a sealed value that does not open (copied from another place or appliance) is
// kept as stored, never sealed twice, and reported.
func TestSecretThatDoesNotOpenIsKept(t *testing.T) {
	f := newSealedFixture(t)
	f.s.Close()
	moved := testCodec{}.Seal([]string{"elsewhere"}, testPSK)
	raw := `{"system":{"host-name":"default"},"ipsec":{"connections":{"aws":{"tunnels":{"tunnel1":{"pre-shared-key":"` + moved + `"}}}}}}`
	if err := os.WriteFile(filepath.Join(f.dir, "config.json"), []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	f.openWith(testCodec{})
	n := f.s.Notices()
	if len(n) == 0 || !strings.Contains(n[0], "ipsec connections aws tunnels tunnel1 pre-shared-key do not open") {
		t.Fatalf("notices = %q", n)
	}
	data, _ := os.ReadFile(filepath.Join(f.dir, "config.json"))
	if !bytes.Contains(data, []byte(moved)) {
		t.Fatalf("the value that does not open was not kept as it was:\n%s", data)
	}
}

// kill9DirEnv names the state directory of TestKill9Child, run by TestKill9AtAnyMoment as its own process.
const kill9DirEnv = "TORIDE_STORE_KILL9_DIR"

// TestKill9Child is the process TestKill9AtAnyMoment kills: it opens the store (recovering whatever it finds) and
// commits a new secret and host name as fast as it can.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv(kill9DirEnv)
	if dir == "" {
		t.Skip("the process TestKill9AtAnyMoment kills; nothing to do on its own")
	}
	s, err := Open(kill9Options(dir))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		gen := fmt.Sprintf("%d-%d", os.Getpid(), i)
		err := s.Edit(func(c *config.Config) error {
			if err := setPSK(c, "Clear.PSK-"+gen); err != nil {
				return err
			}
			return c.Set([]string{"system", "host-name", "gen-" + gen})
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(context.Background(), CommitRequest{Author: "child", Comment: "generation " + gen}); err != nil {
			t.Fatal(err)
		}
	}
}

func kill9Options(dir string) Options {
	return Options{Dir: dir, Applier: &recordingApplier{}, Secrets: testCodec{}, ArchiveSize: 1000,
		Validate: func(*config.Config) config.Problems { return nil }}
}

// TestKill9AtAnyMoment kills a process that commits, at random moments, again and again, with some damage done
// between rounds (a truncated config.json; every file rewritten with its secrets in clear, as an older version
// left them), so that kills also land inside Open's recovery and resealing. After every kill the store opens,
// holds no secret in clear in any file, runs its newest archive entry, and has lost no revision it had before.
func TestKill9AtAnyMoment(t *testing.T) {
	dir := t.TempDir()
	rounds := 15
	if testing.Short() {
		rounds = 6
	}
	seen := map[int]string{} // revision → comment, from every earlier round
	for round := range rounds {
		damage := []string{"none", "truncate", "clear"}[round%3]
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
		cmd.Env = append(os.Environ(), kill9DirEnv+"="+dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		_ = cmd.Process.Kill()
		if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: the child failed by itself: %v\n%s", round, err, out.String())
		}

		s, err := Open(kill9Options(dir))
		if err != nil {
			t.Fatalf("round %d: Open after kill -9: %v", round, err)
		}
		if got := filesHolding(t, dir, "Clear.PSK-"); len(got) != 0 {
			t.Fatalf("round %d: a secret is in clear in %v", round, got)
		}
		if n := s.Notices(); len(n) > 0 && round > 0 && []string{"none", "truncate", "clear"}[(round-1)%3] != "truncate" {
			t.Fatalf("round %d: a kill alone left something to report: %q", round, n)
		}
		newest, _, err := s.Revision(0)
		if err != nil || !config.Equal(newest, s.Running()) {
			t.Fatalf("round %d: the running configuration is not the newest archive entry (%v)", round, err)
		}
		commits := s.Commits()
		have := map[int]string{}
		for _, c := range commits {
			have[c.Revision] = c.Comment
		}
		for rev, comment := range seen {
			if have[rev] != comment {
				t.Fatalf("round %d: revision %d (%q) was lost; the archive holds %+v", round, rev, comment, commits)
			}
		}
		seen = have

		switch damage {
		case "truncate":
			data, _ := os.ReadFile(s.path("config.json"))
			if err := os.WriteFile(s.path("config.json"), data[:len(data)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		case "clear":
			for _, c := range commits {
				cfg, meta, err := s.revisionConfig(c.Revision)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := config.Marshal(cfg)
				if err := s.writeEntry(meta, body); err != nil {
					t.Fatal(err)
				}
			}
			body, _ := config.Marshal(s.Running())
			if err := os.WriteFile(s.path("config.json"), body, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
	if len(seen) < rounds {
		t.Fatalf("only %d revisions after %d rounds: the child hardly committed", len(seen), rounds)
	}
	t.Logf("%d revisions over %d kills", len(seen), rounds)
}
