package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWholeAndPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	for _, body := range []string{"first", "second, longer than the first"} {
		if err := Write(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != body {
			t.Fatalf("read back %q, %v; want %q", got, err, body)
		}
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if left := temps(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestCreateNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	if err := Create(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, []byte("two"), 0o600); !errors.Is(err, ErrExist) {
		t.Fatalf("second Create: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "one" {
		t.Fatalf("the file was replaced: %q", got)
	}
	if left := temps(t, filepath.Dir(path)); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestRemoveTempsAndRemove(t *testing.T) {
	dir := t.TempDir()
	// What a crash in the middle of Write leaves: a temporary file next to the real one.
	crash := filepath.Join(dir, ".config.json.123"+TempSuffix)
	keep := filepath.Join(dir, "config.json")
	for _, p := range []string{crash, keep} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	RemoveTemps(dir)
	if _, err := os.Stat(crash); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file kept: %v", err)
	}
	if err := Remove(keep); err != nil {
		t.Fatal(err)
	}
	if err := Remove(keep); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}

func temps(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), TempSuffix) {
			out = append(out, e.Name())
		}
	}
	return out
}
