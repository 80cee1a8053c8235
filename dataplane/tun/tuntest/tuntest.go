// Package tuntest is an in-memory TUN device, and a maker of them that keeps the open ones by name as the
// kernel does, for tests of code that moves packets through a TUN device (wireguard-go's tun/tuntest, tailscale's
// fake TUN): the test plays the kernel, delivering packets for the code to read and taking the ones it writes.
//
//	test ── Deliver ──► Device.Read ──► code under test ──► Device.Write ──► Written ──► test
//
// A Device and Devices are safe for concurrent use.
package tuntest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"toride/dataplane/tun"
)

// BatchSize is how many packets a Device reads or writes at most in one call, so batched code paths run.
const BatchSize = 16

// ErrBusy is Create of a name whose device is still open, as TUNSETIFF answers.
var ErrBusy = errors.New("tuntest: device name in use")

// Device is an in-memory TUN device. Packets the code writes come out of Written, one per packet, without the
// write's headroom; a Write blocks until the test takes them or the device is closed, as a kernel that is not
// reading would back-pressure. Packets a test delivers are read by the code in order.
type Device struct {
	name string
	mtu  int

	// Written receives a copy of every packet written to the device.
	Written chan []byte

	toRead    chan []byte
	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
	onClose   func()
}

// NewDevice returns an open device; it reports tun.EventUp once.
func NewDevice(name string, mtu int) *Device {
	d := &Device{name: name, mtu: mtu, Written: make(chan []byte), toRead: make(chan []byte, 256),
		events: make(chan tun.Event, 1), closed: make(chan struct{})}
	d.events <- tun.EventUp
	return d
}

// Deliver queues pkt for the code to read, as if the kernel had routed it to the device. It returns os.ErrClosed
// once the device is closed, and blocks while 256 delivered packets wait to be read.
func (d *Device) Deliver(pkt []byte) error {
	select {
	case <-d.closed:
		return os.ErrClosed
	default:
	}
	select {
	case d.toRead <- slices.Clone(pkt):
		return nil
	case <-d.closed:
		return os.ErrClosed
	}
}

// Closed reports whether the device was closed (a kernel device would be gone).
func (d *Device) Closed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// File is nil: there is no file descriptor.
func (d *Device) File() *os.File { return nil }

// Read implements tun.Device: it waits for one delivered packet, then takes the others waiting, up to len(bufs).
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var pkt []byte
	select {
	case <-d.closed:
		return 0, os.ErrClosed
	case pkt = <-d.toRead:
	}
	n := 0
	for {
		if len(pkt) > len(bufs[n])-offset {
			return n, fmt.Errorf("tuntest: a packet of %d bytes for a buffer of %d: %w", len(pkt), len(bufs[n])-offset, io.ErrShortBuffer)
		}
		sizes[n] = copy(bufs[n][offset:], pkt)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case pkt = <-d.toRead:
		default:
			return n, nil
		}
	}
}

// Write implements tun.Device: each packet goes to Written.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case <-d.closed:
			return i, os.ErrClosed
		case d.Written <- slices.Clone(b[offset:]):
		}
	}
	return len(bufs), nil
}

// MTU implements tun.Device.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// Name implements tun.Device.
func (d *Device) Name() (string, error) { return d.name, nil }

// Events implements tun.Device.
func (d *Device) Events() <-chan tun.Event { return d.events }

// BatchSize implements tun.Device.
func (d *Device) BatchSize() int { return BatchSize }

// Close implements tun.Device: blocked reads and writes return os.ErrClosed. It is idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		close(d.events)
		if d.onClose != nil {
			d.onClose()
		}
	})
	return nil
}

// Devices makes in-memory devices in place of the kernel (tun.Kernel) and keeps the open ones by name. Its zero
// value is ready.
type Devices struct {
	mu   sync.Mutex
	open map[string]*Device
	fail error
	made int
}

// Create implements what tun.Kernel does: a new open device, or ErrBusy when one of that name is open.
func (ds *Devices) Create(name string, mtu int) (tun.Device, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if err := ds.fail; err != nil {
		ds.fail = nil
		return nil, err
	}
	if ds.open[name] != nil {
		return nil, fmt.Errorf("%w: %s", ErrBusy, name)
	}
	if ds.open == nil {
		ds.open = map[string]*Device{}
	}
	d := NewDevice(name, mtu)
	d.onClose = func() {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		if ds.open[name] == d {
			delete(ds.open, name)
		}
	}
	ds.open[name] = d
	ds.made++
	return d, nil
}

// FailNext makes the next Create return err instead of a device.
func (ds *Devices) FailNext(err error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.fail = err
}

// Get returns the open device of that name, or nil.
func (ds *Devices) Get(name string) *Device {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.open[name]
}

// Open lists the names of the open devices, sorted.
func (ds *Devices) Open() []string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	names := make([]string, 0, len(ds.open))
	for n := range ds.open {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Made counts the devices Create has made.
func (ds *Devices) Made() int {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.made
}
