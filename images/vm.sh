#!/bin/sh
# Boots the amd64 image (images/out/toride-amd64.qcow2) in qemu with UEFI (OVMF), its serial console on this
# terminal: the quickest way to try the appliance. Log in as admin: the first login's password is toride, to be
# changed there and then. Ctrl-a x quits. Its disk keeps what was committed and the new password (/config).
# The management interface, eth0, is on qemu's user network; the host's port 8443 reaches the appliance's.
set -eu
out=$(cd "$(dirname "$0")" && pwd)/out
disk=$out/toride-amd64.qcow2
[ -f "$disk" ] || { echo "images/vm.sh: $disk missing: run make image ARCH=amd64" >&2; exit 1; }
[ -f "$out/OVMF_VARS-amd64.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$out/OVMF_VARS-amd64.fd"
# TCG, which runs anywhere; TORIDE_VM_KVM=1 uses KVM where it works (much faster).
accel="-accel tcg -cpu max"
[ "${TORIDE_VM_KVM:-0}" = 1 ] && accel="-accel kvm -cpu host"
exec qemu-system-x86_64 $accel -machine q35 -m 1024 -smp 2 -nographic \
	-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
	-drive if=pflash,format=raw,file="$out/OVMF_VARS-amd64.fd" \
	-drive if=virtio,format=qcow2,file="$disk" \
	-nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:8443-:8443
