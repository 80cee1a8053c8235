package charon

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"toride/tests/lab"
)

// TestLaunchRanksCharonBelowTorided: the process launch starts has an oom_score_adj 100 below its parent's, so
// the kernel's OOM killer takes torided before charon.
func TestLaunchRanksCharonBelowTorided(t *testing.T) {
	lab.Require(t)
	own, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	// Raise this process's own score first (always allowed): lowering below the value a privileged writer set
	// needs CAP_SYS_RESOURCE, which torided has on the appliance but a test container may not.
	const parent = 300
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(parent)), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile("/proc/self/oom_score_adj", own, 0) })
	dir := t.TempDir()
	out := filepath.Join(dir, "adj")
	fake := filepath.Join(dir, "charon")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ncat /proc/self/oom_score_adj >"+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	p, err := launch(launchSpec{binary: fake, runDir: runDir, output: &log})
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	if p.err != nil {
		t.Fatalf("the launch failed: %v\n%s", p.err, log.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(parent - 100); strings.TrimSpace(string(got)) != want {
		t.Fatalf("charon's oom_score_adj = %s, want %s (its parent's %d less 100)", strings.TrimSpace(string(got)), want, parent)
	}
}
