// Package tun makes the appliance's TUN devices, with the kernel's offloads where it has them.
//
// A device is golang.zx2c4.com/wireguard/tun's: on Linux it is opened with a virtio-net header, so the kernel
// hands over TCP (and, where it has USO, UDP) super-packets of up to 64 KiB, which Read splits into a batch of
// packets (GSO); Write coalesces a batch back into super-packets where it can (GRO). Reads and writes are
// batched (BatchSize packets) and take an offset: the headroom in front of each packet that the virtio-net
// header, and a caller's own framing, are written into in place.
//
// Code that moves packets takes a Device, never makes one: the appliance passes a Kernel, tests an in-memory
// device of package tuntest.
package tun

import (
	"errors"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is an open TUN device. Closing it removes it from the kernel.
type Device = wgtun.Device

// Event is a change of a device's state, as its Events channel reports it.
type Event = wgtun.Event

// EventUp is a device coming up.
const EventUp = wgtun.EventUp

// ErrTooManySegments is a Read whose super-packet has more segments than the buffers given; the packets read
// before it are valid, and the device stays usable.
var ErrTooManySegments = wgtun.ErrTooManySegments

// ErrUnsupported is Create off Linux.
var ErrUnsupported = errors.New("tun: TUN devices are only made on Linux")

// Kernel makes TUN devices in the kernel. It is safe for concurrent use; its zero value makes them in the
// caller's network namespace.
type Kernel struct {
	// Netns is the path of the network namespace to make the devices in ("": the caller's). A device stays in
	// the namespace it was made in, whichever goroutine uses it.
	Netns string
}
