package probe

import (
	"context"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestDetect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	before := countXFRMStates(t)
	caps, err := Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities: %+v", caps)
	if !caps.XFRM {
		t.Fatalf("XFRM netlink not detected: %v", caps.Notes)
	}
	if !caps.ESP && len(caps.Notes) == 0 {
		t.Fatal("ESP missing without a note saying why")
	}
	if after := countXFRMStates(t); after != before {
		t.Fatalf("probing changed the caller's XFRM state count: %d → %d", before, after)
	}
	if _, err := netlink.LinkByName("tprobe0"); err == nil {
		t.Fatal("the probe interface leaked into the caller's namespace")
	}
}

func TestDetectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Detect(ctx); err == nil {
		t.Fatal("want the context's error")
	}
}

func countXFRMStates(t *testing.T) int {
	t.Helper()
	h, err := netlink.NewHandle(unix.NETLINK_XFRM)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	states, err := h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return len(states)
}
