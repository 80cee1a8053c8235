#!/bin/busybox sh
# The VM's first process: mounts what the lab needs, loads the kernel's IPsec modules, runs each test binary the
# host put in /toride/suites (in its package's directory, with the pattern the host chose), prints each one's exit
# status for the host and powers off.
/bin/busybox mkdir -p /bin /proc /sys /dev /run /tmp /var /root
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/net
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
ln -sfn /run /var/run
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
echo /usr/sbin/modprobe > /proc/sys/kernel/modprobe
for m in $(cat /toride/modules); do modprobe "$m" || echo "TORIDE-VM: modprobe $m failed"; done
ip link set lo up
hostname toride-vm
echo "TORIDE-VM: BOOTED $(uname -r)"
for suite in /toride/suites/*; do
	name=$(cat "$suite/name")
	echo "TORIDE-VM: SUITE $name"
	(cd "/toride/src/$name" && env $(cat /toride/env) "$suite/test" -test.v -test.timeout 20m -test.run "$(cat "$suite/run")" </dev/null 2>&1)
	echo "TORIDE-VM: EXIT $?"
done
sync
poweroff -f
