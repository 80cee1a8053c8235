package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"toride/dataplane/probe"
	"toride/ike/awsconf"
	"toride/tests/cloudlab"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

// TestIPsecKernelESP runs where the kernel has ESP (the VM tier, tests/vm, boots the appliance's kernel for it):
// the cloud's file brings up both tunnels with charon's kernel-netlink backend, and the LAN's traffic is carried
// by the kernel's own ESP SAs, in both directions.
//
// The cloud answers over the tunnel the appliance sends on: in today's policy-based mode the kernel checks
// traffic coming in against the one inbound policy of the two identical ones charon installed, so answers over
// the other tunnel are dropped (XfrmInTmplMismatch). Route-based tunnels on xfrm interfaces accept both.
func TestIPsecKernelESP(t *testing.T) {
	caps, err := probe.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lab.RequireKernel(t, caps.ESP, "ESP")
	tp := cloudlab.New(t, cloudlab.Options{})
	d := toridetest.Start(t, tp.App, t.TempDir())
	up := importAndCommitTunnels(t, d, tp, labFile(t, awsconf.FormatGeneric, 2))
	t.Logf("commit → both tunnels up %v", up.Round(time.Millisecond))

	var st ipsecStatus
	if err := d.API.Do(context.Background(), "GET", "/api/v1/ipsec/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Backend != "kernel-netlink" {
		t.Fatalf("backend %q on a kernel with ESP, want kernel-netlink", st.Backend)
	}
	if show := d.MustToride("show", "ipsec"); !strings.Contains(show, "kernel-netlink") {
		t.Errorf("show ipsec does not name the kernel backend:\n%s", show)
	}

	// One ping picks the tunnel the kernel sends on; the cloud is pointed back at it.
	tp.PingOnce()
	out, _ := espPackets(t, tp)
	carrier := -1
	for i, n := range out {
		if n > 0 {
			carrier = i
		}
	}
	if carrier < 0 {
		tp.Diagnose(t)
		t.Fatal("a ping from the LAN left over neither tunnel's ESP SA")
	}
	tp.RouteCloudVia(t, carrier)
	tp.WaitPing(lab.Within(t, 30*time.Second), t)

	// The kernel's SAs, not a userspace ESP, carry the pings, out and in.
	out0, in0 := espPackets(t, tp)
	for i := 0; i < 10; i++ {
		if !tp.PingOnce() {
			tp.Diagnose(t)
			t.Fatalf("ping %d of 10 over tunnel %d was not answered", i+1, carrier+1)
		}
	}
	out1, in1 := espPackets(t, tp)
	if sent, got := out1[carrier]-out0[carrier], in1[carrier]-in0[carrier]; sent < 10 || got < 10 {
		tp.Diagnose(t)
		t.Fatalf("tunnel %d's kernel ESP SAs counted %d packets out and %d in for 10 pings", carrier+1, sent, got)
	}
}

// espPackets returns the packets the appliance's kernel ESP SAs counted, out to and in from each gateway.
func espPackets(t *testing.T, tp *cloudlab.Topo) (out, in [2]uint64) {
	t.Helper()
	states, err := tp.App.Handle().XfrmStateList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		for i, gw := range cloudlab.GWOutside {
			switch {
			case s.Proto != netlink.XFRM_PROTO_ESP:
			case s.Dst.String() == gw:
				out[i] += s.Statistics.Packets
			case s.Src.String() == gw:
				in[i] += s.Statistics.Packets
			}
		}
	}
	return out, in
}
