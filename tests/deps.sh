#!/bin/sh
# Installs the Debian packages that running or testing Toride needs, only those missing, so `make run` and
# `make test` work on a fresh Debian 12 machine; for the tests, also unpacks the kernel the VM tier boots.
# Usage: tests/deps.sh run|test|image
set -eu

run_pkgs="iproute2 util-linux dnsmasq-base strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins"
# dnsmasq: the DHCP server of the network the box is plugged into (make run's uplink, the tests' LANs).
# Real peers the tests start: see ARCHITECTURE.md ("Real peers used in tests").
test_pkgs="$run_pkgs iputils-ping procps chrony openvpn openconnect ocserv iperf3 oathtool nftables curl frr"
# The VM tier (tests/vm): qemu boots Debian's kernel with an initramfs of busybox, kmod and the lab's tools.
vm_pkgs="qemu-system-x86 busybox-static kmod"
# The appliance image (images/build.sh) and its boot test: Debian's tools build it, OVMF boots it in qemu.
image_pkgs="mmdebstrap squashfs-tools dosfstools mtools fdisk e2fsprogs grub-efi-amd64-bin ovmf qemu-utils qemu-system-x86"
# The arm64 image: its initramfs is packed with cpio, AAVMF boots it in qemu's arm64 machine. Its busybox and GRUB's
# arm64 modules are Debian's arm64 packages, which images/build.sh unpacks beside the root, never installed here.
image_pkgs="$image_pkgs cpio qemu-system-arm qemu-efi-aarch64"

case "${1:-test}" in
run) pkgs=$run_pkgs ;;
test) pkgs="$test_pkgs $vm_pkgs $image_pkgs" ;;
image) pkgs=$image_pkgs ;;
*) echo "usage: $0 run|test|image" >&2; exit 2 ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "installing:$missing"
	$sudo apt-get update -qq
	# No services started by package scripts: the tests start their own peers.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ "${1:-test}" = test ] || exit 0

# The kernel the appliance ships (Debian's linux-image-amd64), unpacked under .run/vm/linux, never installed on
# this machine: its vmlinuz boots in qemu and its modules go into the VM's initramfs.
vm_dir="$(cd "$(dirname "$0")/.." && pwd)/.run/vm"
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1; }
image=$(kernel_package)
[ -n "$image" ] || { $sudo apt-get update -qq; image=$(kernel_package); }
[ -n "$image" ] || { echo "deps.sh: no linux-image-amd64 in the package lists" >&2; exit 1; }
if [ ! -f "$vm_dir/linux/$image.ready" ]; then
	echo "unpacking $image for the VM tier"
	rm -rf "$vm_dir/linux" && mkdir -p "$vm_dir/linux/deb"
	(cd "$vm_dir/linux/deb" && apt-get download -q "$image" >/dev/null 2>&1)
	dpkg-deb -x "$vm_dir/linux/deb/"*.deb "$vm_dir/linux/root"
	rm -rf "$vm_dir/linux/deb"
	release=$(ls "$vm_dir/linux/root/lib/modules")
	depmod -b "$vm_dir/linux/root" "$release"
	echo "$release" > "$vm_dir/linux/$image.ready"
fi
