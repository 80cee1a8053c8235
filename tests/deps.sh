#!/bin/sh
# Installs the Debian packages that running or testing Toride needs, only those missing, so `make run` and
# `make test` work on a fresh Debian 12 machine. Usage: tests/deps.sh run|test
set -eu

run_pkgs="iproute2 util-linux strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins"
# Real peers the tests start: see ARCHITECTURE.md ("Real peers used in tests").
test_pkgs="$run_pkgs iputils-ping procps chrony openvpn openconnect ocserv iperf3 oathtool nftables curl"

case "${1:-test}" in
run) pkgs=$run_pkgs ;;
test) pkgs=$test_pkgs ;;
*) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing:$missing"
$sudo apt-get update -qq
# No services started by package scripts: the tests start their own peers.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
