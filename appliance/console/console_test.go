package console

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

const baseConfig = `
set system host-name 'gw1'
set system interfaces eth0 address '192.0.2.1/24'
set system interfaces eth1 address '10.0.0.1/24'
set users bob password-hash 'the-hash'
`

func words(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Word)
	}
	return out
}

// TestComplete: ? and TAB offer the shell's commands, then the schema's nodes with their help, a tag node's
// existing keys, a leaf's enum or the form of its value, relative to the edit level in configuration mode; a
// wrong word is an error that quotes it.
func TestComplete(t *testing.T) {
	for _, tt := range []struct {
		name        string
		configuring bool
		level       []string
		line        string
		want        []string // exactly these words, in this order
		has         []string // at least these
		lacks       []string
		err         string
	}{
		{name: "operational commands", line: "", has: []string{"configure", "show", "set", "commit", "exit"}, lacks: []string{"edit", "<Enter>"}},
		{name: "a command's prefix", line: "sh", want: []string{"show"}},
		{name: "show's words", line: "show ", has: []string{"configuration", "ipsec", "sslvpn", "status", "system", "<Enter>"}},
		{name: "show configuration options", line: "show configuration candidate ", has: []string{"commands", "json"}},
		{name: "top of the schema", line: "set ", want: []string{"system", "ipsec", "sslvpn", "users", "pki", "api"}},
		{name: "a node's prefix", line: "set sys", want: []string{"system"}},
		{name: "existing interfaces", line: "set system interfaces ", want: []string{"<interface>", "eth0", "eth1"}},
		{name: "an existing key's prefix", line: "delete system interfaces eth", want: []string{"<interface>", "eth0", "eth1"}},
		{name: "a value's range", line: "set system interfaces eth0 mtu ", want: []string{"<576-9000>"}},
		{name: "a value's form", line: "set system interfaces eth9 address ", want: []string{"<x.x.x.x/n>"}},
		{name: "an enum", line: "set sslvpn servers main topology ", want: []string{"subnet", "net30"}},
		{name: "an enum's prefix", line: "set sslvpn servers main topology n", want: []string{"net30"}},
		{name: "after a value", line: "set system host-name gw2 ", want: []string{"<Enter>"}},
		{name: "delete offers the value set", line: "delete system host-name ", has: []string{"gw1"}},
		{name: "a wrong node", line: "set system wibble ", err: `"wibble"`},
		{name: "a wrong command", line: "wibble ", err: `"wibble"`},
		{name: "configuration commands", configuring: true, line: "", has: []string{"edit", "up", "top", "load", "save", "run", "show", "exit"}, lacks: []string{"configure"}},
		{name: "relative to the edit level", configuring: true, level: []string{"system", "interfaces", "eth0"}, line: "set ",
			want: []string{"description", "address", "dhcp", "mtu", "disable"}},
		{name: "show at the edit level", configuring: true, level: []string{"system"}, line: "show in", want: []string{"interfaces"}},
		{name: "run reaches operational commands", configuring: true, line: "run sh", want: []string{"show"}},
		{name: "run show's words", configuring: true, line: "run show sslvpn ", want: []string{"sessions", "<Enter>"}},
		{name: "exit discard", configuring: true, line: "exit ", want: []string{"discard", "<Enter>"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sh := New(Options{API: newFakeAPI(baseConfig)})
			sh.configuring, sh.level = tt.configuring, tt.level
			_, items, err := sh.Complete(context.Background(), tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := words(items)
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			for _, w := range tt.has {
				if !slices.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			for _, w := range tt.lacks {
				if slices.Contains(got, w) {
					t.Errorf("%q has %q", got, w)
				}
			}
			for _, it := range items {
				if it.Word == "interfaces" && it.Help != "Network interfaces" {
					t.Errorf("interfaces has help %q, not the schema's", it.Help)
				}
			}
		})
	}
}

// TestWriteHelp: ? lists each word with its help, within 80 columns.
func TestWriteHelp(t *testing.T) {
	var b bytes.Buffer
	WriteHelp(&b, []Item{{"address", "Address with prefix length, e.g. 192.0.2.1/24"}, {"<x.x.x.x/n>", strings.Repeat("long help ", 20)}})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if lines[0] != "Possible completions:" || !strings.HasPrefix(lines[1], "  address      Address with prefix length") {
		t.Fatalf("help:\n%s", b.String())
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}
}

// TestConfigurationMode: configure, edit levels, set relative to them, the prompt's change mark, show's +
// marks, exit refused with uncommitted changes, exit discard, commit.
func TestConfigurationMode(t *testing.T) {
	fake := newFakeAPI(baseConfig)
	var out, errOut bytes.Buffer
	sh := New(Options{API: fake, Stdout: &out, Stderr: &errOut})
	ctx := context.Background()
	step := func(line, prompt string) {
		t.Helper()
		out.Reset()
		if err := sh.Exec(ctx, strings.Fields(line)); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if got := sh.Prompt(); got != prompt {
			t.Fatalf("after %s: prompt %q, want %q", line, got, prompt)
		}
	}
	if sh.Prompt() != "toride> " {
		t.Fatalf("operational prompt %q", sh.Prompt())
	}
	step("configure", "toride(config)# ")
	step("edit system interfaces eth1", "toride(config system interfaces eth1)# ")
	step("set mtu 1400", "toride(config* system interfaces eth1)# ")
	if fake.candidate.System.Interfaces["eth1"].MTU != 1400 {
		t.Fatal("set was not relative to the edit level")
	}
	step("show", "toride(config* system interfaces eth1)# ")
	if want := " address 10.0.0.1/24\n+mtu 1400\n"; out.String() != want {
		t.Fatalf("show:\n%s\nwant:\n%s", out.String(), want)
	}
	step("up", "toride(config* system interfaces)# ")
	step("top", "toride(config*)# ")
	step("show system interfaces eth1", "toride(config*)# ")
	if !strings.Contains(out.String(), "+mtu 1400") {
		t.Fatalf("show PATH:\n%s", out.String())
	}
	if err := sh.Exec(ctx, []string{"edit", "system", "host-name"}); err == nil {
		t.Fatal("edit moved into a leaf")
	}
	if err := sh.Exec(ctx, []string{"exit"}); err == nil || !strings.Contains(err.Error(), "exit discard") {
		t.Fatalf("exit with uncommitted changes: %v", err)
	}
	if on, _ := sh.Configuring(); !on {
		t.Fatal("a refused exit left configuration mode")
	}
	step("commit", "toride(config)# ")
	if fake.running.System.Interfaces["eth1"].MTU != 1400 {
		t.Fatal("commit did not reach the store")
	}
	step("set system host-name gw2", "toride(config*)# ")
	step("edit system", "toride(config* system)# ")
	step("exit", "toride(config*)# ") // from a level: to the top
	step("exit discard", "toride> ")
	if fake.candidate.System.HostName != "gw1" {
		t.Fatal("exit discard kept the change")
	}
	step("configure", "toride(config)# ")
	step("exit", "toride> ")
}

// TestLoadSave: save writes the candidate's set lines (secrets as ****) readable by its owner only; load puts
// them back as the whole candidate, a **** secret keeping its value; a bad line names itself and changes nothing.
func TestLoadSave(t *testing.T) {
	fake := newFakeAPI(baseConfig)
	var out bytes.Buffer
	sh := New(Options{API: fake, Stdout: &out, Stderr: &out})
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "saved.conf")
	for _, line := range []string{"configure", "save " + file} {
		if err := sh.Exec(ctx, strings.Fields(line)); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(file)
	if !strings.Contains(string(data), "set users bob password-hash '****'") || strings.Contains(string(data), "the-hash") {
		t.Fatalf("saved:\n%s", data)
	}
	edited := strings.Replace(string(data), "'gw1'", "'gw9'", 1)
	os.WriteFile(file, []byte(edited), 0o600)
	if err := sh.Exec(ctx, []string{"load", file}); err != nil {
		t.Fatal(err)
	}
	if fake.candidate.System.HostName != "gw9" || fake.candidate.Users["bob"].PasswordHash != "the-hash" || len(fake.candidate.System.Interfaces) != 2 {
		t.Fatalf("loaded: %+v, %q", fake.candidate.System, string(fake.candidate.Users["bob"].PasswordHash))
	}
	if !strings.HasSuffix(sh.Prompt(), "(config*)# ") {
		t.Fatalf("prompt after load %q", sh.Prompt())
	}
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("set system host-name 'gw3'\nset system wibble 1\n"), 0o600)
	err = sh.Exec(ctx, []string{"load", bad})
	if err == nil || !strings.Contains(err.Error(), "line 2") || fake.candidate.System.HostName != "gw9" {
		t.Fatalf("bad load: %v; host name %q", err, fake.candidate.System.HostName)
	}
}

// TestScriptPointsAtTheWrongWord: a script of set lines stops being a success at its first bad line, and the
// error shows which word is wrong.
func TestScriptPointsAtTheWrongWord(t *testing.T) {
	fake := newFakeAPI(baseConfig)
	var out, errOut bytes.Buffer
	sh := New(Options{API: fake, Stdout: &out, Stderr: &errOut})
	script := "configure\nset system host-name gw2\nset system interfces eth0 mtu 1400\nset system interfaces eth0 mtu 99999\ncommit\nexit\n"
	if rc := sh.Run(context.Background(), NewScriptReader(strings.NewReader(script), nil), false); rc != 1 {
		t.Fatalf("status %d, want 1\n%s", rc, errOut.String())
	}
	want := "  set system interfces eth0 mtu 1400\n             ^\n"
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("no pointer at interfces:\n%s", errOut.String())
	}
	if !strings.Contains(errOut.String(), "  set system interfaces eth0 mtu 99999\n"+strings.Repeat(" ", 33)+"^\n") {
		t.Errorf("no pointer at the value:\n%s", errOut.String())
	}
	if fake.running.System.HostName != "gw2" {
		t.Errorf("the good lines were not committed")
	}
	if strings.Contains(out.String(), "toride") {
		t.Errorf("a script got prompts:\n%s", out.String())
	}
}
