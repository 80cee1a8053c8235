package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunExitStatus: toride's exit status is 2 for bad usage, 1 when torided cannot be reached, and a script on
// standard input gets the status of its first failure.
func TestRunExitStatus(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no.sock")
	for _, tt := range []struct {
		name  string
		args  []string
		stdin string
		want  int
	}{
		{"bad flag", []string{"--wibble"}, "", 2},
		{"unknown command", []string{"--socket", sock, "wibble"}, "", 2},
		{"unreachable", []string{"--socket", sock, "show", "status"}, "", 1},
		{"help", []string{"--socket", sock, "help"}, "", 0},
		{"script, bad usage first", []string{"--socket", sock}, "show wibble\nshow status\n", 2},
		{"script, nothing failed", []string{"--socket", sock}, "# nothing\nexit\nshow status\n", 0},
	} {
		var out bytes.Buffer
		if got := run(tt.args, strings.NewReader(tt.stdin), &out, &out); got != tt.want {
			t.Errorf("%s: status %d, want %d; output:\n%s", tt.name, got, tt.want, out.String())
		}
	}
}
