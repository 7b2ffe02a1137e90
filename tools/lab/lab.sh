#!/usr/bin/env bash
# The seed text's three-host lab in network namespaces: client Y, proxy X (a router), server Z.
#
#   Y eth0 192.0.2.2/24 2001:db8:1::2/64 --- lan0 192.0.2.1 2001:db8:1::1  X
#   X wan0 198.51.100.1/24 2001:db8:2::1/64 --- eth0 198.51.100.2 2001:db8:2::2  Z
#
# Y routes everything via X; X forwards (ip_forward, IPv6 forwarding); Z has NO default route,
# so it can answer Y's subnet only with --spoof-route (the static route back via X that the
# seed's -T set-up needs). The veth pairs are created directly inside the namespaces, so the
# host's own namespace never sees them; `down` kills whatever runs in the namespaces.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: lab.sh up [--prefix P] [--spoof-route]   create the lab; prints LAB_PREFIX=P
       lab.sh down [--prefix P]                 kill its processes, delete it (idempotent)
       lab.sh exec [--prefix P] y|x|z CMD...    run CMD inside a host's namespace
       lab.sh route-back [--prefix P] on|off    add/remove Z's route back to Y's subnets via X
       lab.sh status [--prefix P]               show namespaces, addresses, routes, processes
       lab.sh sweep                             remove labs of e2e tests and demos (prefix
                                                e2e<PID>/demo<PID>) whose process is gone
The prefix defaults to $LAB_PREFIX (for up: tp<PID>); namespaces are P-y, P-x, P-z.
EOF
    exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
prefix=${LAB_PREFIX:-}
spoof_route=0
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    --spoof-route) spoof_route=1; shift ;;
    --) shift; break ;;
    *) break ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "lab.sh: needs root (network namespaces)" >&2
    exit 77
fi
if [ "$cmd" = sweep ]; then
    # A test killed with SIGKILL (ctest's timeout) cannot run its trap: its lab stays. The
    # prefix carries the owner's PID; a lab whose owner is gone is left over.
    for p in $(ip netns list | awk '{print $1}' | grep -E '^(e2e|demo)[0-9]+-[xyz]$' | sed 's/-.$//' | sort -u || true); do
        pid=${p#e2e}
        pid=${pid#demo}
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "lab.sh: sweeping $p (owner $pid is gone)" >&2
            "$0" down --prefix "$p"
        fi
    done
    exit 0
fi
if [ -z "$prefix" ]; then
    if [ "$cmd" = up ]; then
        prefix=tp$$
    else
        echo "lab.sh: $cmd: no lab given (use --prefix P or LAB_PREFIX=P)" >&2
        exit 2
    fi
fi
if ! [[ "$prefix" =~ ^[A-Za-z0-9_]{1,20}$ ]]; then
    echo "lab.sh: bad prefix '$prefix' ([A-Za-z0-9_]{1,20})" >&2
    exit 2
fi

ns_of() {
    case "${1,,}" in
    y | client) echo "$prefix-y" ;;
    x | proxy) echo "$prefix-x" ;;
    z | server) echo "$prefix-z" ;;
    *) echo "lab.sh: unknown host '$1' (y, x or z)" >&2; return 2 ;;
    esac
}
Y=$prefix-y
X=$prefix-x
Z=$prefix-z
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_exists() { [ -e "/run/netns/$1" ]; }

route_back() {  # on|off
    local verb=replace
    [ "$1" = on ] || verb=del
    in_ns "$Z" ip -4 route "$verb" 192.0.2.0/24 via 198.51.100.1 2>/dev/null || [ "$verb" = del ]
    in_ns "$Z" ip -6 route "$verb" 2001:db8:1::/64 via 2001:db8:2::1 2>/dev/null || [ "$verb" = del ]
}

down() {
    local ns pids
    for ns in "$Y" "$X" "$Z"; do
        ns_exists "$ns" || continue
        # Processes keep a namespace alive after its name is gone: kill them first.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -n "$pids" ] || break
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null || true
            sleep 0.1
        done
        ip netns del "$ns" 2>/dev/null || true
    done
}

up() {
    local ns
    for ns in "$Y" "$X" "$Z"; do
        if ns_exists "$ns"; then
            echo "lab.sh: namespace $ns already exists (lab.sh down --prefix $prefix)" >&2
            exit 1
        fi
    done
    trap 'down; echo "lab.sh: up failed; removed the partial lab" >&2' ERR
    for ns in "$Y" "$X" "$Z"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
        # No DAD: addresses are usable at once (set before the veths exist, so they inherit it).
        in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    done
    # Both ends created straight into their namespaces: nothing appears in the host's.
    ip link add lan0 netns "$X" type veth peer name eth0 netns "$Y"
    ip link add wan0 netns "$X" type veth peer name eth0 netns "$Z"

    in_ns "$Y" ip addr add 192.0.2.2/24 dev eth0
    in_ns "$Y" ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad
    in_ns "$Y" ip link set eth0 up
    in_ns "$Y" ip route add default via 192.0.2.1
    in_ns "$Y" ip -6 route add default via 2001:db8:1::1

    in_ns "$X" ip addr add 192.0.2.1/24 dev lan0
    in_ns "$X" ip -6 addr add 2001:db8:1::1/64 dev lan0 nodad
    in_ns "$X" ip addr add 198.51.100.1/24 dev wan0
    in_ns "$X" ip -6 addr add 2001:db8:2::1/64 dev wan0 nodad
    in_ns "$X" ip link set lan0 up
    in_ns "$X" ip link set wan0 up
    # X routes; rp_filter off so TPROXY'd and spoofed-source traffic is not dropped as martian.
    in_ns "$X" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.lo.rp_filter=0 net.ipv4.conf.lan0.rp_filter=0 net.ipv4.conf.wan0.rp_filter=0

    in_ns "$Z" ip addr add 198.51.100.2/24 dev eth0
    in_ns "$Z" ip -6 addr add 2001:db8:2::2/64 dev eth0 nodad
    in_ns "$Z" ip link set eth0 up
    if [ "$spoof_route" = 1 ]; then
        route_back on
    fi
    trap - ERR
    echo "LAB_PREFIX=$prefix"
}

status() {
    local ns
    for ns in "$Y" "$X" "$Z"; do
        if ! ns_exists "$ns"; then
            echo "== $ns: absent"
            continue
        fi
        echo "== $ns"
        in_ns "$ns" ip -brief addr show | sed 's/^/  /'
        in_ns "$ns" ip route show | sed 's/^/  v4 route: /'
        in_ns "$ns" ip -6 route show | grep -v '^fe80' | sed 's/^/  v6 route: /' || true
        echo "  pids: $(ip netns pids "$ns" | tr '\n' ' ')"
    done
}

case "$cmd" in
up) up ;;
down) down ;;
status) status ;;
route-back)
    [ $# -eq 1 ] && [[ "$1" =~ ^(on|off)$ ]] || usage
    ns_exists "$Z" || { echo "lab.sh: lab $prefix is not up" >&2; exit 1; }
    route_back "$1"
    ;;
exec)
    [ $# -ge 2 ] || usage
    ns=$(ns_of "$1")
    shift
    ns_exists "$ns" || { echo "lab.sh: lab $prefix is not up" >&2; exit 1; }
    exec ip netns exec "$ns" "$@"
    ;;
*) usage ;;
esac
