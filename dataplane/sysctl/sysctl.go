// Package sysctl reads and writes kernel parameters of the caller's network namespace through /proc/sys (the
// net.* ones are per namespace).
package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// root is where the parameters are; tests point it elsewhere.
var root = "/proc/sys"

func path(name string) string {
	return filepath.Join(root, strings.ReplaceAll(name, ".", "/"))
}

// Get returns a parameter's value, e.g. Get("net.ipv4.ip_forward").
func Get(name string) (string, error) {
	b, err := os.ReadFile(path(name))
	if err != nil {
		return "", fmt.Errorf("sysctl: %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes a parameter if it differs.
func Set(name, value string) error {
	if cur, err := Get(name); err == nil && cur == value {
		return nil
	}
	if err := os.WriteFile(path(name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl: %s=%s: %w", name, value, err)
	}
	return nil
}
