package tests

import (
	"context"
	"regexp"
	"testing"

	"toride/tests/toridetest"
)

// requireMetrics scrapes the daemon's GET /metrics and fails the test for each pattern (a multi-line regexp)
// the scrape does not match.
func requireMetrics(t *testing.T, d *toridetest.Daemon, patterns ...string) {
	t.Helper()
	var scrape []byte
	if err := d.API.Do(context.Background(), "GET", "/metrics", nil, &scrape); err != nil {
		t.Fatal(err)
	}
	for _, p := range patterns {
		if !regexp.MustCompile(`(?m)` + p).Match(scrape) {
			t.Errorf("the metrics lack %s:\n%s", p, scrape)
		}
	}
}
