#!/usr/bin/env bash
# e2e 0, the lab itself: up creates three namespaces and no link in the host's namespace; Y
# reaches Z through X on both families; Z reaches Y only with the route back; down kills what
# runs inside and removes everything, twice in a row, even after a "crash" (processes left).
set -euo pipefail
LAB=$(cd "$(dirname "$0")/../.." && pwd)/tools/lab/lab.sh
PEER="python3 $(cd "$(dirname "$0")/../.." && pwd)/tools/lab/peer.py"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
ip netns add "e2echk$$" 2>/dev/null || { echo "SKIP: no network namespaces"; exit 77; }
ip netns del "e2echk$$"
export LAB_PREFIX=lab$$
trap '"$LAB" down >/dev/null 2>&1 || true' EXIT
host_links_before=$(ip -o link show | awk -F': ' '{print $2}' | sort)
"$LAB" up | grep -xe "LAB_PREFIX=$LAB_PREFIX" >/dev/null
[ "$(ip -o link show | awk -F': ' '{print $2}' | sort)" = "$host_links_before" ] ||
    { echo "FAIL: lab.sh up changed the host's links"; exit 1; }
for ns in y x z; do ip netns list | grep "^$LAB_PREFIX-$ns\b" >/dev/null || { echo "FAIL: no $ns"; exit 1; }; done
! "$LAB" up 2>/dev/null || { echo "FAIL: a second up of the same lab succeeded"; exit 1; }
[ "$("$LAB" exec x sysctl -n net.ipv4.ip_forward)" = 1 ] || { echo "FAIL: ip_forward off in X"; exit 1; }
"$LAB" exec z $PEER server --log /dev/null 198.51.100.2:8080 '[2001:db8:2::2]:8080' >/dev/null &
server=$!
sleep 0.5
# Without the route back Z cannot answer Y: the connection times out.
if "$LAB" exec y $PEER client --timeout 1 198.51.100.2 8080 >/dev/null; then
    echo "FAIL: Z answered Y without a route back"; exit 1
fi
"$LAB" route-back on
"$LAB" exec y $PEER client 198.51.100.2 8080 | grep -xe 'server_peer=192.0.2.2:.*' >/dev/null ||
    { echo "FAIL: Y cannot reach Z over IPv4"; exit 1; }
"$LAB" exec y $PEER client 2001:db8:2::2 8080 | grep -xe 'server_peer=\[2001:db8:1::2\]:.*' >/dev/null ||
    { echo "FAIL: Y cannot reach Z over IPv6"; exit 1; }
# "Crash": leave the server running in Z, then down must still remove everything.
disown -a
"$LAB" down
"$LAB" down
if ip netns list | grep "^$LAB_PREFIX-" >/dev/null; then echo "FAIL: namespaces left"; exit 1; fi
sleep 0.2
if kill -0 "$server" 2>/dev/null; then
    echo "FAIL: a process of the lab survived down"; exit 1
fi
echo "PASS: lab_updown"
