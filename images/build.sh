#!/bin/sh
# Builds the appliance's disk image for one architecture from rootfs/ (what the image holds) and the static
# binaries of `make build`: a raw GPT disk to flash and a qcow2 for VMs, in images/out/. Runs as root (mmdebstrap's
# root mode, chroot for the packages' scripts). The same inputs and SOURCE_DATE_EPOCH (default: the last commit's
# time) give the same root image.
#
# The disk: 1 EFI system partition (GRUB, its grub.cfg and grubenv), 2 root slot A, 3 root slot B (empty until an
# update writes it), 4 the config partition (ext4, /config, never written by an update).
#
# Usage: images/build.sh amd64|arm64
set -eu

arch=${1:-amd64}
case "$arch" in
amd64) efi_target=x86_64-efi efi_name=BOOTX64.EFI ;;
arm64) efi_target=arm64-efi efi_name=BOOTAA64.EFI ;;
*) echo "images/build.sh: $arch: only amd64 and arm64 are built" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "images/build.sh: needs root (mmdebstrap's root mode)" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
# TORIDE_IMAGE_OUT puts the result elsewhere (the image test's second build, which must give the same bytes).
out=${TORIDE_IMAGE_OUT:-$top/images/out}
mkdir -p "$out"
work=$out/work-$arch
root=$work/root
suite=bookworm
mirror=http://deb.debian.org/debian
: "${SOURCE_DATE_EPOCH:=$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)}"
# The image's version, as the binaries' (make build): what show system image lists for each slot.
: "${TORIDE_VERSION:=$(git -C "$top" describe --always --dirty 2>/dev/null || echo dev)}"
export SOURCE_DATE_EPOCH E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH LC_ALL=C.UTF-8 TZ=UTC

# Sizes in MiB. The slots leave the root room to grow; the raw disk is sparse, the qcow2 holds only what is used.
esp_mib=64 slot_mib=768 config_mib=256
# Fixed identifiers, so that two builds are the same bytes; grub.cfg names the slots by these PARTUUIDs.
uuid() { echo "5d4e3a6f-000$1-4a5c-9e55-746f72696465"; }

start=$(date +%s)
stage() { echo "image $arch: $* ($(($(date +%s) - start)) s)"; }

for b in torided toride; do
	[ -x "$top/bin/linux-$arch/$b" ] || { echo "images/build.sh: bin/linux-$arch/$b missing: run make build" >&2; exit 1; }
done

rm -rf "$work" && mkdir -p "$work"

pkgs=$(sed -e 's/#.*//' -e "s/ARCH/$arch/" "$top/rootfs/packages" | xargs | tr ' ' ',')
# debian_root VARIANT [OPTION...]: mmdebstrap's root of rootfs/packages for $arch, with the options both arches share.
debian_root() {
	variant=$1 && shift
	mmdebstrap --quiet --mode=root --variant="$variant" --architectures="$arch" --aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		"$@" "$suite" "$root" "deb $mirror $suite main" "deb $mirror $suite-updates main" \
		"deb http://deb.debian.org/debian-security $suite-security main"
}
# arm64: its programs cannot run on the build machine (no emulation), so its packages are only unpacked, the same
# set as minbase's (Essential, Priority required, apt) and rootfs/packages; configure-root.sh does what their
# scripts would have, and initramfs.sh makes the initramfs. busybox (for it) and GRUB's arm64 modules come from the
# same archive, unpacked beside the root, never installed on the build machine. Whatever the build machine's
# architecture, so that the image is the same wherever it is built.
if [ "$arch" = arm64 ]; then
	stage "1/6 root file system: Debian $suite packages from rootfs/packages, unpacked (mmdebstrap --variant=extract)"
	debian_root extract --include="$pkgs,apt" --include='?or(?essential,?priority(required))' \
		--setup-hook='for d in bin sbin lib; do mkdir -p "$1/usr/$d" && ln -s "usr/$d" "$1/$d"; done' \
		--extract-hook="mkdir -p $work/debs && cd $work/debs && APT_CONFIG=\$MMDEBSTRAP_APT_CONFIG apt-get -qq -o APT::Sandbox::User=root download busybox-static grub-efi-$arch-bin"
	for deb in "$work/debs/"*.deb; do dpkg-deb -x "$deb" "$work/host"; done
	grub_dir=$work/host/usr/lib/grub/$efi_target
	"$top/images/configure-root.sh" "$root"
else
	stage "1/6 root file system: Debian $suite packages from rootfs/packages (mmdebstrap)"
	# The initramfs configuration goes in before the kernel's package, whose scripts build the initramfs.
	debian_root minbase --include="$pkgs" --setup-hook='mkdir -p "$1/etc/initramfs-tools"' \
		--setup-hook="copy-in $top/rootfs/etc/initramfs-tools/conf.d $top/rootfs/etc/initramfs-tools/hooks $top/rootfs/etc/initramfs-tools/scripts /etc/initramfs-tools"
fi

stage "2/6 the appliance: rootfs/ files, torided and toride, users, units"
(cd "$top/rootfs" && tar --exclude=./README.md --exclude=./packages -cf - .) | tar -C "$root" -xf - --no-same-owner
install -m 0755 "$top/bin/linux-$arch/torided" "$root/usr/sbin/torided"
install -m 0755 "$top/bin/linux-$arch/toride" "$root/usr/bin/toride"
echo /usr/bin/toride >>"$root/etc/shells"
ln -sf ../run/toride/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/config" "$root/boot/efi" "$root/usr/lib/toride"
echo "$TORIDE_VERSION" >"$root/usr/lib/toride/version"
systemd-sysusers --root="$root" >/dev/null
# The admin's initial password, toride, expired: the first login on the console must choose another, which
# toride-admin-save.path keeps on /config.
TORIDE_ROOT=$root "$root/usr/lib/toride/admin-password" initial
systemctl --root="$root" enable torided.service toride-trial.service toride-admin.service toride-admin-save.path 2>/dev/null
# strongswan-charon's package starts a charon of its own (ipsec.conf); torided starts and drives the only one.
systemctl --root="$root" mask strongswan-starter.service 2>/dev/null
: >"$root/etc/motd"
# /etc is writable at run time, in memory (rootfs/etc/initramfs-tools/scripts/local-bottom/toride-etc). As far as
# systemd can tell it is then out of date with /usr at every boot, and the units of ConditionNeedsUpdate=/etc
# (systemd-sysusers and the like) run again: this stamp, no older than /usr (the time stamps below clamp both to
# SOURCE_DATE_EPOCH), says the build did it.
printf '%s\n' "# The image's build updated /etc for this /usr; see systemd-update-done.service(8)." >"$root/etc/.updated"
kver=$(ls "$root/lib/modules")
ln -sf "vmlinuz-$kver" "$root/boot/vmlinuz"
ln -sf "initrd.img-$kver" "$root/boot/initrd.img"
# Empty: systemd makes a machine ID for each boot of a read-only root. The rest is what a build leaves behind.
: >"$root/etc/machine-id"
rm -rf "$root/var/cache/apt/"* "$root/var/lib/apt/lists/"* "$root/var/log/"* "$root/etc/ssh/ssh_host_"*
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"

if [ "$arch" = arm64 ]; then
	stage "2/6 the initramfs: busybox, the modules that reach the disk, our init (images/initramfs.sh)"
	"$top/images/initramfs.sh" "$root" "$kver" "$work/host/bin/busybox" "$root/boot/initrd.img-$kver"
	touch --date="@$SOURCE_DATE_EPOCH" "$root/boot/initrd.img-$kver"
fi

stage "3/6 root slot: squashfs (gzip: GRUB reads it to load the slot's kernel, and has no zstd for squashfs)"
mksquashfs "$root" "$work/root.squashfs" -comp gzip -noappend -quiet -no-progress >/dev/null
[ "$(stat -c %s "$work/root.squashfs")" -le $((slot_mib << 20)) ] || { echo "images/build.sh: root larger than a slot" >&2; exit 1; }

stage "4/6 EFI system partition: GRUB"
grub-mkimage ${grub_dir:+--directory="$grub_dir"} --format="$efi_target" --prefix=/EFI/BOOT --output="$work/$efi_name" \
	part_gpt fat squash4 normal configfile linux echo test regexp loadenv serial terminal all_video gzio
grub-editenv "$work/grubenv" create
grub-editenv "$work/grubenv" set slot=a "version_a=$TORIDE_VERSION"
touch --date="@$SOURCE_DATE_EPOCH" "$work/$efi_name" "$work/grubenv" "$top/images/grub.cfg"
truncate -s "${esp_mib}M" "$work/esp.img"
mkfs.vfat -F 32 -n ESP -i 544f5249 --invariant "$work/esp.img" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/toride
mcopy -m -i "$work/esp.img" "$work/$efi_name" "$top/images/grub.cfg" ::/EFI/BOOT/
mcopy -m -i "$work/esp.img" "$work/grubenv" ::/EFI/toride/

stage "5/6 config partition and disk"
truncate -s "${config_mib}M" "$work/config.img"
mkfs.ext4 -q -L config -U "$(uuid 5)" -E root_owner=0:0,hash_seed="$(uuid 6)" "$work/config.img"
disk=$out/toride-$arch.img
total=$((1 + esp_mib + 2 * slot_mib + config_mib + 1))
rm -f "$disk" && truncate -s "${total}M" "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
label-id: $(uuid 0)
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp, uuid=$(uuid 1)
size=${slot_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root-a, uuid=$(uuid 2)
size=${slot_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root-b, uuid=$(uuid 3)
size=${config_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=config, uuid=$(uuid 4)
EOF
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.squashfs" of="$disk" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
dd if="$work/config.img" of="$disk" bs=1M seek=$((1 + esp_mib + 2 * slot_mib)) conv=notrunc,sparse status=none

stage "6/6 qcow2"
qemu-img convert -f raw -O qcow2 "$disk" "$out/toride-$arch.qcow2"
cp "$work/root.squashfs" "$out/toride-$arch.root.squashfs"
# What request system image install checks the root against.
(cd "$out" && sha256sum "toride-$arch.root.squashfs" >"toride-$arch.root.squashfs.sha256")
rm -rf "$work"

stage "done"
mib() { echo "$(($(stat -c %s "$1") >> 20)) MiB"; }
echo "  $out/toride-$arch.img: $(mib "$disk") (raw GPT disk, sparse: $(($(du -k "$disk" | cut -f1) >> 10)) MiB used)"
echo "  $out/toride-$arch.qcow2: $(mib "$out/toride-$arch.qcow2")"
echo "  $out/toride-$arch.root.squashfs: $(mib "$out/toride-$arch.root.squashfs") (the root of one slot, version $TORIDE_VERSION, kernel $kver; the update file, with its .sha256)"
