#!/bin/sh
# Makes the initramfs of a root whose programs cannot run on the build machine (arm64 built on amd64), where
# initramfs-tools' mkinitramfs cannot (it runs the root's ldd to copy programs): busybox (static, from Debian's
# busybox-static of the root's architecture), the kernel's modules that reach the disk and mount the root slot
# (taken from the root, with what they depend on), and images/initramfs/init. Reproducible: sorted names, time
# stamps of SOURCE_DATE_EPOCH, owner root, gzip without a name or time.
#
# Usage: images/initramfs.sh ROOT KERNEL-VERSION BUSYBOX OUT (BUSYBOX: the static busybox binary)
set -eu
root=$1 kver=$2 busybox=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
: "${SOURCE_DATE_EPOCH:?}"

# The drivers a disk may sit behind (virtio in VMs; NVMe, SATA, USB and SD/eMMC on boxes), the root's file system,
# and ext4 and overlay for the root's local-bottom scripts. Their dependencies come from the kernel's modules.dep.
dirs="drivers/virtio drivers/block drivers/nvme/host drivers/ata drivers/scsi/sd_mod.ko drivers/scsi/virtio_scsi.ko
drivers/usb/storage drivers/usb/host drivers/mmc fs/squashfs fs/ext4 fs/overlayfs"

tree=$(mktemp -d "${TMPDIR:-/tmp}/initramfs.XXXXXX")
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/bin" "$tree/dev" "$tree/lib/modules/$kver/kernel"
install -m 0755 "$busybox" "$tree/bin/busybox"
ln -s busybox "$tree/bin/sh"
install -m 0755 "$here/initramfs/init" "$tree/init"
# The kernel opens the console before init runs.
mknod -m 0600 "$tree/dev/console" c 5 1

mods=$root/lib/modules/$kver
for d in $dirs; do
	(cd "$mods/kernel" && find "$d" -name '*.ko*')
done | while read -r m; do
	name=$(basename "$m" | sed 's/\.ko.*//')
	modprobe --dirname="$root" --set-version="$kver" --show-depends "$name" | sed -n "s#^insmod $mods/\([^ ]*\).*#\1#p"
done | sort -u | while read -r m; do
	mkdir -p "$tree/lib/modules/$kver/$(dirname "$m")"
	cp "$mods/$m" "$tree/lib/modules/$kver/$m"
done
cp "$mods/modules.order" "$mods/modules.builtin" "$mods/modules.builtin.modinfo" "$tree/lib/modules/$kver/"
depmod --basedir="$tree" "$kver"

# The root's initramfs-tools scripts that run once the root is mounted (initramfs-tools' local-bottom).
if [ -d "$root/etc/initramfs-tools/scripts/local-bottom" ]; then
	mkdir -p "$tree/scripts"
	cp -r "$root/etc/initramfs-tools/scripts/local-bottom" "$tree/scripts/"
fi

find "$tree" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
(cd "$tree" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -9 -n >"$out"
