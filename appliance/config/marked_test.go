package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMarkedTree: configuration mode's show marks what the candidate adds (+), deletes (-) and changes (>),
// from the edit level down, and compares secrets by value while showing them as ****.
func TestMarkedTree(t *testing.T) {
	running := mustParse(t, `
set system host-name 'gw1'
set system interfaces eth0 address '192.0.2.1/24'
set system interfaces eth0 address '192.0.2.2/24'
set system interfaces eth2 mtu '1400'
set users bob password-hash 'old-hash'
`)
	candidate := mustParse(t, `
set system host-name 'gw2'
set system interfaces eth0 address '192.0.2.1/24'
set system interfaces eth0 disable
set system interfaces eth1 address '10.0.0.1/24'
set users bob password-hash 'new-hash'
`)
	for _, tt := range []struct {
		path []string
		want string
	}{
		{[]string{"system"}, `
>host-name gw2
 interfaces eth0 {
     address 192.0.2.1/24
-    address 192.0.2.2/24
+    disable
 }
+interfaces eth1 {
+    address 10.0.0.1/24
+}
-interfaces eth2 {
-    mtu 1400
-}`},
		{nil, `
 system {
>    host-name gw2
     interfaces eth0 {
         address 192.0.2.1/24
-        address 192.0.2.2/24
+        disable
     }
+    interfaces eth1 {
+        address 10.0.0.1/24
+    }
-    interfaces eth2 {
-        mtu 1400
-    }
 }
 users bob {
>    password-hash ****
 }`},
		{[]string{"system", "interfaces", "eth1"}, `
+address 10.0.0.1/24`},
		{[]string{"system", "host-name"}, `
>host-name gw2`},
		{[]string{"users"}, `
 users bob {
>    password-hash ****
 }`},
	} {
		got, err := MarkedTree(running, candidate, tt.path)
		if err != nil {
			t.Fatalf("%v: %v", tt.path, err)
		}
		if diff := cmp.Diff(got, strings.TrimPrefix(tt.want, "\n")+"\n"); diff != "" {
			t.Errorf("%v (-got +want):\n%s", tt.path, diff)
		}
	}
	if _, err := MarkedTree(running, candidate, []string{"system", "wibble"}); err == nil || !strings.Contains(err.Error(), `"wibble"`) {
		t.Errorf("a path off the schema: %v", err)
	}
	if same, _ := MarkedTree(running, running, nil); strings.ContainsAny(same[:1], "+->") {
		t.Errorf("a configuration against itself is marked:\n%s", same)
	}
}

// TestSetRedacted: a line of a redacted listing keeps **** for KeepSecrets, where Set refuses it.
func TestSetRedacted(t *testing.T) {
	path := []string{"users", "bob", "password-hash", Placeholder}
	if err := (&Config{}).Set(path); err == nil {
		t.Fatal("Set took **** as a value")
	}
	c := &Config{}
	if err := c.SetRedacted(path); err != nil {
		t.Fatal(err)
	}
	old := mustParse(t, "set users bob password-hash 'the-hash'")
	if err := KeepSecrets(c, old); err != nil || c.Users["bob"].PasswordHash != "the-hash" {
		t.Fatalf("kept %q, %v", string(c.Users["bob"].PasswordHash), err)
	}
}

// TestDescribeFormat: describe says how a value or key is written.
func TestDescribeFormat(t *testing.T) {
	c := &Config{}
	for path, want := range map[string]string{
		"system interfaces":              "<interface>",
		"system interfaces eth0 address": "<x.x.x.x/n>",
		"system interfaces eth0 mtu":     "<576-9000>",
		"system static-routes":           "<x.x.x.x/n>",
		"system host-name":               "<text>",
		"users bob password-hash":        "<secret>",
		"system interfaces eth0 disable": "",
	} {
		n, err := c.Describe(strings.Fields(path))
		if err != nil || n.Format != want {
			t.Errorf("%s: format %q, want %q (%v)", path, n.Format, want, err)
		}
	}
}
