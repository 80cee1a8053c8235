package nft_test

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"toride/dataplane/nft"
	"toride/tests/lab"
)

// A clamp on the router's interface lowers the MSS both ends of a TCP connection through it agree on, in both
// directions (the SYN going out of the interface, the SYN-ACK coming in), and a clamp above the path's MSS
// changes nothing.
func TestMSSClampOnForwardedSYNs(t *testing.T) {
	l := lab.New(t, "nft")
	a, r, b := l.Namespace("a"), l.Namespace("r"), l.Namespace("b")
	l.Link(a, "eth0", "10.8.1.2/24", r, "lan0", "10.8.1.1/24")
	l.Link(r, "tun0", "10.8.2.1/24", b, "eth0", "10.8.2.2/24")
	a.AddRoute("default", "10.8.1.1")
	b.AddRoute("default", "10.8.2.1")
	r.EnableForwarding()
	m, err := nft.New(nft.Options{NetnsPath: "/run/netns/" + r.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := lab.Within(t, 30*time.Second)

	var ln net.Listener
	if err := doIn(b, func() (err error) { ln, err = net.Listen("tcp4", "10.8.2.2:8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// mss returns the segment size each end settled on for a new connection from a to b.
	mss := func() (client, server int) {
		t.Helper()
		var c net.Conn
		if err := doIn(a, func() (err error) { c, err = net.DialTimeout("tcp4", "10.8.2.2:8080", 5*time.Second); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return maxSeg(t, c), maxSeg(t, s)
	}
	c0, s0 := mss()
	if c0 < 1400 || s0 < 1400 {
		t.Fatalf("MSS %d/%d before any clamp on a 1500-byte path", c0, s0)
	}
	if err := m.SetClamps(ctx, "ike", []nft.Clamp{{Interface: "tun0", MSS: 1200}}); err != nil {
		t.Fatal(err)
	}
	if c, s := mss(); c > 1200 || s > 1200 {
		t.Errorf("MSS %d (client) / %d (server) through a clamp of 1200", c, s)
	}
	if out := r.MustRun("nft", "list chain inet toride forward"); !strings.Contains(out, `oifname "tun0"`) || !strings.Contains(out, "maxseg size set 1200") {
		t.Errorf("forward chain:\n%s", out)
	}
	if err := m.SetClamps(ctx, "ike", []nft.Clamp{{Interface: "tun0", MSS: 1460}}); err != nil {
		t.Fatal(err)
	}
	if c, s := mss(); c != c0 || s != s0 {
		t.Errorf("MSS %d/%d with a clamp above the path's, want %d/%d as without", c, s, c0, s0)
	}
	if err := m.SetClamps(ctx, "ike", nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := r.Run("nft", "list chain inet toride forward"); strings.Contains(out, "maxseg") {
		t.Errorf("clamps left after removing them:\n%s", out)
	}
	if err := m.SetClamps(ctx, "ike", []nft.Clamp{{Interface: "tun0", MSS: 100}}); err == nil {
		t.Error("an MSS of 100 was accepted")
	}
}

func maxSeg(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v
}
