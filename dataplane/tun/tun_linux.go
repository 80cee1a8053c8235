package tun

import (
	"fmt"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"toride/dataplane/nsutil"
)

// Create makes the TUN device name with the given MTU, with GSO and GRO when the kernel offers them (the
// device's BatchSize is then above 1).
func (k Kernel) Create(name string, mtu int) (Device, error) {
	var dev Device
	err := nsutil.Do(k.Netns, func() (err error) {
		dev, err = wgtun.CreateTUN(name, mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tun: create %s: %w", name, err)
	}
	if k.Netns != "" {
		return inNamespace{dev, k.Netns}, nil
	}
	return dev, nil
}

// inNamespace is a device of another namespace: its MTU is asked for by name, so from inside that namespace.
type inNamespace struct {
	Device
	netns string
}

func (d inNamespace) MTU() (mtu int, err error) {
	err = nsutil.Do(d.netns, func() (err error) {
		mtu, err = d.Device.MTU()
		return err
	})
	return mtu, err
}
