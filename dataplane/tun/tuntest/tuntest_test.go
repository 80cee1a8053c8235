package tuntest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"toride/dataplane/tun"
)

var _ tun.Device = (*Device)(nil)

func TestDevicesKeepTheOpenOnesByName(t *testing.T) {
	var ds Devices
	a, err := ds.Create("vpn-a", 1500)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ds.Create("vpn-a", 1500); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second vpn-a: %v, want ErrBusy", err)
	}
	if _, err := ds.Create("vpn-b", 1400); err != nil {
		t.Fatal(err)
	}
	if got := ds.Open(); !slices.Equal(got, []string{"vpn-a", "vpn-b"}) {
		t.Fatalf("open %v", got)
	}
	if mtu, _ := ds.Get("vpn-b").MTU(); mtu != 1400 {
		t.Fatalf("MTU %d", mtu)
	}
	a.Close()
	a.Close()
	if got := ds.Open(); !slices.Equal(got, []string{"vpn-b"}) || ds.Get("vpn-a") != nil {
		t.Fatalf("after closing vpn-a: open %v", got)
	}
	if _, err := ds.Create("vpn-a", 1500); err != nil {
		t.Fatalf("vpn-a again after its close: %v", err)
	}
	boom := errors.New("boom")
	ds.FailNext(boom)
	if _, err := ds.Create("vpn-c", 1500); !errors.Is(err, boom) {
		t.Fatalf("FailNext: %v", err)
	}
	if _, err := ds.Create("vpn-c", 1500); err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	if ds.Made() != 4 {
		t.Fatalf("made %d, want 4", ds.Made())
	}
}

func TestDeviceReadsInBatchesAndWritesWithoutHeadroom(t *testing.T) {
	d := NewDevice("vpn-t", 1500)
	if ev := <-d.Events(); ev != tun.EventUp {
		t.Fatalf("first event %v", ev)
	}
	for i := range 3 {
		if err := d.Deliver([]byte{byte(i), 1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	bufs := [][]byte{make([]byte, 16), make([]byte, 16)}
	sizes := make([]int, 2)
	for _, want := range [][][]byte{{{0, 1, 2}, {1, 1, 2}}, {{2, 1, 2}}} {
		n, err := d.Read(bufs, sizes, 4)
		if err != nil || n != len(want) {
			t.Fatalf("read %d, %v; want %d", n, err, len(want))
		}
		for i := range n {
			if !bytes.Equal(bufs[i][4:4+sizes[i]], want[i]) {
				t.Fatalf("packet %d: % x, want % x", i, bufs[i][4:4+sizes[i]], want[i])
			}
		}
	}
	if err := d.Deliver(make([]byte, 13)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(bufs, sizes, 4); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("too large a packet: %v", err)
	}

	out := []byte{0xff, 0xff, 0x45, 0}
	go func() { _, _ = d.Write([][]byte{out}, 2) }()
	select {
	case got := <-d.Written:
		if !bytes.Equal(got, []byte{0x45, 0}) {
			t.Fatalf("written % x", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing written")
	}

	// Close ends a blocked read and write, and every later call.
	readDone, writeDone := make(chan error, 1), make(chan error, 1)
	go func() { _, err := d.Read(bufs, sizes, 0); readDone <- err }()
	go func() { _, err := d.Write([][]byte{out}, 0); writeDone <- err }()
	time.Sleep(10 * time.Millisecond)
	d.Close()
	for what, ch := range map[string]chan error{"read": readDone, "write": writeDone} {
		select {
		case err := <-ch:
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("%s after close: %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked after close", what)
		}
	}
	if err := d.Deliver([]byte{1}); !errors.Is(err, os.ErrClosed) || !d.Closed() {
		t.Fatalf("deliver after close: %v", err)
	}
	if _, ok := <-d.Events(); ok {
		t.Fatal("events open after close")
	}
}
