package appliance

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"toride/appliance/api"
	"toride/appliance/cloudapi"
	"toride/appliance/ipsecsvc"
	"toride/appliance/logring"
	"toride/appliance/metrics"
	"toride/appliance/sslvpnsvc"
	"toride/appliance/system"
)

// TestOpenAPIMatchesTheRoutes: every operation the OpenAPI document promises is routed.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	doc, err := os.ReadFile("api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{})
	(&cloudapi.API{}).Register(srv)
	(&sslvpnsvc.Component{}).Register(srv)
	(&ipsecsvc.API{}).Register(srv)
	logring.New(1).Register(srv)
	system.InterfacesAPI{}.Register(srv)
	metrics.New(metrics.Sources{}).Register(srv)

	pathLine := regexp.MustCompile(`^  (/[^:]*):`)
	methodLine := regexp.MustCompile(`^    (get|post|put|delete):`)
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	documented := 0
	var path string
	for _, line := range strings.Split(string(doc), "\n") {
		if m := pathLine.FindStringSubmatch(line); m != nil {
			path = param.ReplaceAllString(m[1], "x1")
			continue
		}
		if m := methodLine.FindStringSubmatch(line); m != nil && path != "" {
			documented++
			if !srv.Routed(strings.ToUpper(m[1]), path) {
				t.Errorf("documented but not routed: %s %s", strings.ToUpper(m[1]), path)
			}
		}
	}
	if documented < 30 {
		t.Fatalf("only %d operations found in the document; the parser is off", documented)
	}
}
