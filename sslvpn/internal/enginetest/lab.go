package enginetest

import (
	"os"
	"testing"

	"toride/tests/lab"
)

// The addresses of the lab's two ends.
const (
	ServerIP = "10.99.0.1"
	ClientIP = "10.99.0.2"
)

// Lab is a server namespace, where the engine's sockets are, and a client namespace, where the stock client
// runs, joined by a veth pair (eth0 on both sides, ServerIP and ClientIP in a /24), and a directory for the
// test's files. Everything is removed at the test's cleanup.
type Lab struct {
	*lab.Lab
	Server, Client *lab.Netns
	// Dir is short, so unix socket paths made in it fit in sun_path; only its owner may read it.
	Dir string
}

// NewLab makes the lab; it skips the test (or fails it, where lab tests must run) without root or one of tools.
func NewLab(t testing.TB, tools ...string) *Lab {
	t.Helper()
	l := &Lab{Lab: lab.New(t, tools...)}
	l.Server, l.Client = l.Namespace("srv"), l.Namespace("cli")
	l.Link(l.Server, "eth0", ServerIP+"/24", l.Client, "eth0", ClientIP+"/24")
	dir, err := os.MkdirTemp("", "engine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l.Dir = dir
	return l
}
