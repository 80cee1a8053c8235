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
	"toride/appliance/sysimage"
	"toride/appliance/system"
)

// TestOpenAPIMatchesTheRoutes: every operation the OpenAPI document promises is routed, and every route torided
// serves (System.New registers the same components) is documented, with the same method and path.
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
	sysimage.New(sysimage.Layout{}).Register(srv)
	metrics.New(metrics.Sources{}).Register(srv)

	pathLine := regexp.MustCompile(`^  (/[^:]*):`)
	methodLine := regexp.MustCompile(`^    (get|post|put|delete|patch|head):`)
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	documented := map[string]bool{} // "GET /path/{}"
	var path string
	for _, line := range strings.Split(string(doc), "\n") {
		if m := pathLine.FindStringSubmatch(line); m != nil {
			path = m[1]
			continue
		}
		if m := methodLine.FindStringSubmatch(line); m != nil && path != "" {
			method := strings.ToUpper(m[1])
			documented[method+" "+param.ReplaceAllString(path, "{}")] = true
			if !srv.Routed(method, param.ReplaceAllString(path, "x1")) {
				t.Errorf("documented but not routed: %s %s", method, path)
			}
		}
	}
	if len(documented) < 30 {
		t.Fatalf("only %d operations found in the document; the parser is off", len(documented))
	}
	routes := srv.Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	for _, r := range routes {
		if !documented[param.ReplaceAllString(r, "{}")] {
			t.Errorf("routed but not documented: %s", r)
		}
	}
}
