package sysimage

import "golang.org/x/sys/unix"

func mountSquashfs(dev, dir string) (func() error, error) {
	if err := unix.Mount(dev, dir, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return nil, err
	}
	return func() error { return unix.Unmount(dir, 0) }, nil
}
