package xfrm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watch calls fn with every expire and acquire the kernel announces in the namespace of t, until ctx ends. It
// returns the error that stopped it (nil when ctx ended). fn runs on Watch's goroutine: it must not block long,
// or the kernel drops messages (ENOBUFS, returned as an error so the caller can re-read the SAs' state).
func (t *Tunnels) Watch(ctx context.Context, fn func(Event)) error {
	k, ok := t.k.(*netlinkKernel)
	if !ok {
		return fmt.Errorf("%w: watching needs the kernel", ErrXFRM)
	}
	cfg := &netlink.Config{Groups: 1<<(groupAcquire-1) | 1<<(groupExpire-1)}
	if k.nsPath != "" {
		f, err := os.Open(k.nsPath)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrXFRM, err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_XFRM, cfg)
	if err != nil {
		return fmt.Errorf("%w: XFRM monitor: %v", ErrXFRM, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				return fmt.Errorf("%w: XFRM monitor overrun, messages were lost: %v", ErrXFRM, err)
			}
			return fmt.Errorf("%w: XFRM monitor: %v", ErrXFRM, err)
		}
		for _, m := range msgs {
			ev, ok, err := parseMessage(uint16(m.Header.Type), m.Data)
			if err != nil || !ok {
				continue // a message the kernel of tomorrow may shape differently: skipped, never fatal
			}
			fn(ev)
		}
	}
}
