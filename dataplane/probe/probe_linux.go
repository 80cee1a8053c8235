package probe

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"toride/dataplane/nsutil"
)

func detect() (Capabilities, error) {
	var (
		caps Capabilities
		err  error
	)
	nsutil.OnLockedThread(func() bool {
		orig, oerr := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if oerr != nil {
			err = fmt.Errorf("%w: open own network namespace: %w", ErrProbe, oerr)
			return true
		}
		defer unix.Close(orig)
		if uerr := unix.Unshare(unix.CLONE_NEWNET); uerr != nil {
			err = fmt.Errorf("%w: private network namespace: %w", ErrProbe, uerr)
			return true
		}
		caps = probeHere()
		// Back to where we were; the throw-away namespace disappears with its last reference.
		return unix.Setns(orig, unix.CLONE_NEWNET) == nil
	})
	return caps, err
}

// probeHere runs in the throw-away namespace: whatever it adds disappears with it.
func probeHere() Capabilities {
	var caps Capabilities
	h, err := netlink.NewHandle(unix.NETLINK_XFRM, unix.NETLINK_ROUTE)
	if err != nil {
		caps.Notes = append(caps.Notes, "netlink: "+err.Error())
		return caps
	}
	defer h.Close()
	if _, err := h.XfrmStateList(netlink.FAMILY_V4); err != nil {
		caps.Notes = append(caps.Notes, "no XFRM netlink: "+err.Error())
		return caps
	}
	caps.XFRM = true
	state := &netlink.XfrmState{
		Src:   net.ParseIP("192.0.2.1"),
		Dst:   net.ParseIP("192.0.2.2"),
		Proto: netlink.XFRM_PROTO_ESP,
		Mode:  netlink.XFRM_MODE_TUNNEL,
		Spi:   0x100,
		Reqid: 1,
		Auth:  &netlink.XfrmStateAlgo{Name: "hmac(sha256)", Key: make([]byte, 32), TruncateLen: 128},
		Crypt: &netlink.XfrmStateAlgo{Name: "cbc(aes)", Key: make([]byte, 16)},
	}
	if err := h.XfrmStateAdd(state); err != nil {
		caps.Notes = append(caps.Notes, "no kernel ESP: "+err.Error())
	} else {
		caps.ESP = true
	}
	xfrmi := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: "tprobe0"}, Ifid: 1}
	if err := h.LinkAdd(xfrmi); err != nil {
		caps.Notes = append(caps.Notes, "no xfrm interfaces: "+err.Error())
	} else {
		caps.XFRMInterfaces = true
	}
	return caps
}
