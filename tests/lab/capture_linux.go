package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"toride/dataplane/nsutil"
)

// Capture starts recording the frames the link ifname of the namespace sends and receives. The socket is opened
// on a short-lived thread inside the namespace (no test goroutine moves); a goroutine reads it until Close or the
// test's cleanup.
func (n *Netns) Capture(ifname string) *Capture {
	n.lab.t.Helper()
	link, err := n.handle.LinkByName(ifname)
	if err != nil {
		n.lab.t.Fatalf("lab: %s: capture on %s: %v", n.Name, ifname, err)
	}
	var fd int
	// Protocol 0 receives nothing until bind names the protocol and the link: no frame of another link slips in.
	err = nsutil.Do("/run/netns/"+n.Name, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		n.lab.t.Fatalf("lab: %s: packet socket: %v", n.Name, err)
	}
	// Room for bursts; a namespace cannot raise rmem_max, but root may force a larger buffer.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}); err != nil {
		unix.Close(fd)
		n.lab.t.Fatalf("lab: %s: bind packet socket to %s: %v", n.Name, ifname, err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+ifname) // non-blocking: the runtime poller reads it, Close unblocks it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		n.lab.t.Fatal(err)
	}
	c := newCapture(n.Name + "/" + ifname)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Large enough for a GSO frame the veth passes whole.
		buf := make([]byte, 1<<17)
		for {
			var (
				nr   int
				from unix.Sockaddr
				rerr error
			)
			err := rc.Read(func(fd uintptr) bool {
				nr, from, rerr = unix.Recvfrom(int(fd), buf, 0)
				return rerr != unix.EAGAIN
			})
			if err != nil {
				return // closed
			}
			if rerr != nil {
				continue
			}
			ll, _ := from.(*unix.SockaddrLinklayer)
			if !c.add(append([]byte(nil), buf[:nr]...), ll != nil && ll.Pkttype == unix.PACKET_OUTGOING) {
				return
			}
		}
	}()
	c.stop = func() {
		f.Close()
		wg.Wait()
	}
	n.lab.t.Cleanup(c.Close)
	return c
}

// SendIP sends one IPv4 packet, its header as given, from the namespace through a raw socket: the kernel routes
// it as if a program there had sent it (filling in the header checksum, and the identification if zero). For
// packets no socket API would send, such as a SYN with options of the test's choice.
func (n *Netns) SendIP(pkt []byte) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return errors.New("lab: SendIP sends IPv4 packets only")
	}
	var fd int
	err := nsutil.Do("/run/netns/"+n.Name, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW) // IPPROTO_RAW: header included
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: %s: raw socket: %w", n.Name, err)
	}
	defer unix.Close(fd)
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
		return fmt.Errorf("lab: %s: send to %v: %w", n.Name, dst, err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
