#!/bin/sh
# Runs the appliance on this machine without touching the host's networking: torided in a network namespace of
# its own ("toride"), in a UTS namespace of its own (its host name), with eth0 cabled by a veth pair to a second
# namespace ("toride-uplink") that stands for the network the box is plugged into (192.168.1.2/24 there, with a
# DHCP server, dnsmasq, that gives the box 192.168.1.1 as the embedded default asks). Then the toride shell is
# attached to it; leaving the shell (exit, or end of input) stops the appliance.
#
# State survives between runs in .run/state; delete that folder to start from the embedded default again.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "make run needs root (network namespaces): sudo make run" >&2; exit 1; }

ns=toride
uplink=toride-uplink
run=$PWD/.run
mkdir -p "$run"

cleanup() {
	if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" 2>/dev/null || true
	fi
	if [ -n "${dhcp_pid:-}" ]; then
		kill -TERM "$dhcp_pid" 2>/dev/null || true
		wait "$dhcp_pid" 2>/dev/null || true
	fi
	ip netns del "$ns" 2>/dev/null || true
	ip netns del "$uplink" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# A previous run that was killed may have left its namespaces behind.
ip netns del "$ns" 2>/dev/null || true
ip netns del "$uplink" 2>/dev/null || true
ip netns add "$ns"
ip netns add "$uplink"
ip -n "$ns" link add eth0 type veth peer name eth0 netns "$uplink"
ip -n "$uplink" addr add 192.168.1.2/24 dev eth0
ip -n "$uplink" link set eth0 up
ip -n "$uplink" link set lo up
# A new network each run (the veth's MAC address is new too): no leases remembered.
rm -f "$run/uplink.leases"
ip netns exec "$uplink" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --interface=eth0 --no-ping \
	--bind-interfaces --dhcp-range=192.168.1.1,192.168.1.1,255.255.255.0,1h --dhcp-option=option:router,192.168.1.2 \
	--dhcp-leasefile="$run/uplink.leases" --pid-file= --log-facility="$run/dnsmasq.log" &
dhcp_pid=$!

ip netns exec "$ns" unshare --uts bin/torided \
	--state-dir "$run/state" --api-socket "$run/api.sock" --resolv-conf "$run/resolv.conf" \
	2>>"$run/torided.log" &
pid=$!

i=0
until bin/toride --socket "$run/api.sock" show status >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "torided did not start; its log:" >&2
		tail -20 "$run/torided.log" >&2
		exit 1
	fi
	sleep 0.1
done
echo "torided is running in network namespace '$ns' (log: .run/torided.log, API socket: .run/api.sock)."
echo "Its eth0 is cabled to namespace '$uplink' (192.168.1.2/24), whose DHCP server gives it 192.168.1.1. Try: show configuration, set system host-name NAME, commit."
bin/toride --socket "$run/api.sock"
