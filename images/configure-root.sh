#!/bin/sh
# Does, from the build machine, what the maintainer scripts of the image's packages would have done in a root that
# mmdebstrap only unpacked (--variant=extract): a root of another architecture (arm64 built on amd64), whose
# programs cannot run here. Only what the appliance needs, each step as the package named does it on amd64, with
# this machine's own tools where they take a root directory (systemd-sysusers, systemctl, update-alternatives,
# update-shells, pwconv, depmod, systemd-hwdb). images/build.sh runs it before it adds the appliance's own files.
#
# Not done, and why that is fine: /etc/ld.so.cache (ldconfig): Debian's ld.so searches the multiarch directories
# (/lib/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu) without it, and systemd's and strongSwan's private
# libraries are found by their RUNPATH; the dpkg database (/var/lib/dpkg/status): nothing on the box installs
# packages; the initramfs: images/initramfs.sh makes one of its own, since mkinitramfs runs the root's programs.
#
# Usage: images/configure-root.sh ROOT
set -eu
root=$1
[ -d "$root/usr/share/base-passwd" ] || { echo "configure-root.sh: $root: no unpacked Debian root" >&2; exit 1; }

# base-files: the files it installs from its defaults when missing.
install -m 0644 "$root/usr/share/base-files/profile" "$root/etc/profile"
install -m 0644 "$root/usr/share/base-files/dot.profile" "$root/root/.profile"
install -m 0644 "$root/usr/share/base-files/dot.bashrc" "$root/root/.bashrc"
ln -sf debian "$root/etc/dpkg/origins/default"
# systemd makes it at boot, but the root is read-only.
ln -sf ../proc/self/mounts "$root/etc/mtab"

# base-passwd, then passwd (shadowconfig on): the fixed users and groups, with shadow files. systemd's own
# (systemd-journal, systemd-network) come from its sysusers.d, which images/build.sh applies for every image.
install -m 0644 "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
install -m 0644 "$root/usr/share/base-passwd/group.master" "$root/etc/group"
pwconv --root "$root"
grpconv --root "$root"
# udev: the groups its rules give devices to (addgroup --system).
for g in input sgx kvm render; do systemd-sysusers --root="$root" --inline "g $g - -" >/dev/null; done
# login and libpam-modules: empty files they create.
for f in etc/subuid etc/subgid etc/environment etc/security/opasswd; do : >"$root/$f"; done

# libpam-runtime (pam-auth-update with the one profile installed, unix): the common PAM stack that login, su and
# passwd include.
common() { printf '# The common PAM stack for %s, as pam-auth-update writes it with Debian'"'"'s unix profile alone.\n' "$1"; }
{ common authentication
	printf 'auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n'
} >"$root/etc/pam.d/common-auth"
{ common authorization
	printf 'account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\naccount\trequisite\t\t\tpam_deny.so\naccount\trequired\t\t\tpam_permit.so\n'
} >"$root/etc/pam.d/common-account"
{ common passwords
	printf 'password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\npassword\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n'
} >"$root/etc/pam.d/common-password"
for s in session session-noninteractive; do
	{ common "sessions ($s)"
		printf 'session\t[default=1]\t\t\tpam_permit.so\nsession\trequisite\t\t\tpam_deny.so\nsession\trequired\t\t\tpam_permit.so\nsession\trequired\tpam_unix.so\n'
	} >"$root/etc/pam.d/common-$s"
done

# mawk, util-linux, debianutils: their alternatives.
update-alternatives --quiet --root "$root" --install /usr/bin/awk awk /usr/bin/mawk 5 --slave /usr/bin/nawk nawk /usr/bin/mawk
update-alternatives --quiet --root "$root" --install /usr/bin/pager pager /bin/more 50
update-alternatives --quiet --root "$root" --install /usr/bin/which which /usr/bin/which.debianutils 0
# debianutils: /etc/shells from the shells the packages declare.
cp -p "$root/usr/share/debianutils/shells" "$root/etc/shells"
update-shells --root "$root"

# tzdata: UTC.
ln -sf /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
echo Etc/UTC >"$root/etc/timezone"

# ca-certificates: every certificate it ships, trusted, in /etc/ssl/certs and its bundle. Its own script, run
# where the root's certificate directories are at their usual paths (a mount namespace of its own), so that the
# links it makes point where they will be on the box.
{
	printf '# The certificates /etc/ssl/certs trusts (update-ca-certificates): all of those ca-certificates ships.\n'
	(cd "$root/usr/share/ca-certificates" && find . -name '*.crt' | sed 's#^\./##' | LC_ALL=C sort)
} >"$root/etc/ca-certificates.conf"
mkdir -p "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates" "$root/etc/ca-certificates/update.d"
unshare --mount sh -eu -c '
	mount --bind "$1/usr/share/ca-certificates" /usr/share/ca-certificates
	mount --bind "$1/etc/ssl/certs" /etc/ssl/certs
	update-ca-certificates --fresh --certsconf "$1/etc/ca-certificates.conf" \
		--localcertsdir "$1/usr/local/share/ca-certificates" --hooksdir "$1/etc/ca-certificates/update.d" >/dev/null
' sh "$root"

# The kernel (linux-image's postinst): the modules' index, which udev's modprobe reads.
for kver in $(ls "$root/lib/modules"); do depmod --basedir="$root" "$kver"; done
# udev: the hardware database. Made where the root's udev directories are at their usual paths, like the CAs:
# systemd-hwdb --root would record its sources' paths with the build directory in front (and so differ by build).
unshare --mount sh -eu -c '
	mount --bind "$1/usr/lib/udev" /usr/lib/udev
	mount --bind "$1/etc/udev" /etc/udev
	systemd-hwdb update --usr
' sh "$root"

# The units the packages enable (systemctl enable, deb-systemd-helper enable), as on amd64: systemd's, e2fsprogs',
# util-linux's, apt's and dpkg's. strongswan-starter's is masked by images/build.sh; nftables' is not enabled.
systemctl --root="$root" enable getty@tty1.service remote-fs.target systemd-pstore.service e2scrub_reap.service \
	e2scrub_all.timer fstrim.timer apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer 2>/dev/null
