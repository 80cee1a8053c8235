package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"toride/appliance/api"
)

// TestShellExitStatus: an admin who leaves the interactive shell with exit has succeeded, whatever failed on the
// way (make run must not report an error then); a script piped into the shell gets the status of its first
// failure.
func TestShellExitStatus(t *testing.T) {
	unreachable := filepath.Join(t.TempDir(), "no.sock")
	for _, tt := range []struct {
		name        string
		input       string
		interactive bool
		want        int
	}{
		{"interactive, a failed command, then exit", "show status\nexit\n", true, 0},
		{"interactive, end of input", "show status\n", true, 0},
		{"script, unreachable daemon first", "show status\nshow wibble\n", false, 1},
		{"script, bad usage first", "show wibble\nshow status\n", false, 2},
		{"script, nothing failed", "# a comment\n\nexit\nshow status\n", false, 0},
	} {
		var out bytes.Buffer
		c := &cli{c: api.NewClient(unreachable), out: &out, errOut: &out}
		got := c.shell(context.Background(), strings.NewReader(tt.input), &out, tt.interactive)
		if got != tt.want {
			t.Errorf("%s: status %d, want %d; output:\n%s", tt.name, got, tt.want, out.String())
		}
	}
}
