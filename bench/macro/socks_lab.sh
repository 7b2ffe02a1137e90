# shellcheck shell=bash
# Shared by the SOCKS5 benchmarks (socks_compare.sh, socks_cost.sh, sniff_cost.sh), sourced after
# LAB, LAB_PREFIX and WORK are set: the cleanup trap (relays stopped with SIGTERM, so tpengine
# removes its rules; the lab taken down, which kills the servers inside), the per-host helpers,
# and the lab with danted on Z.
PIDS=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
        timeout 15 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null
    done
    "$LAB" down >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_y() { ip netns exec "$LAB_PREFIX-y" "$@"; }
in_x() { ip netns exec "$LAB_PREFIX-x" "$@"; }
in_z() { ip netns exec "$LAB_PREFIX-z" "$@"; }
ready() {  # LOGFILE PID PATTERN
    for _ in $(seq 100); do
        grep -qE "$3" "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { echo "failed to start: $(cat "$1")" >&2; exit 1; }
        sleep 0.1
    done
}

# The lab, and danted on Z:1080 (CPU 0) with no authentication. Z=198.51.100.2 after it.
# Extra arguments run danted under them (e.g. chrt -f PRIO).
socks_lab_up() {
    "$LAB" up >/dev/null || exit 1
    Z=198.51.100.2
    for ns in y x z; do ip netns exec "$LAB_PREFIX-$ns" sysctl -qw net.ipv4.tcp_tw_reuse=1; done
    # danted binds each outgoing socket to port 0 of its external address (tcp_tw_reuse does not
    # apply to bind), so its TIME_WAIT sockets on Z used up the ephemeral ports after ~28k
    # connections and every later connection failed (socks_net_unreachable): the runs that came
    # next counted errors and relay CPU without connections. Z keeps few.
    in_z sysctl -qw net.ipv4.tcp_max_tw_buckets=1024
    cat >"$WORK/danted.conf" <<DANTED
logoutput: /dev/null
internal: $Z port = 1080
external: $Z
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0/0 to: 0/0 }
socks pass { from: 0/0 to: 0/0 }
DANTED
    in_z "$@" taskset -c 0 danted -f "$WORK/danted.conf" -p "$WORK/danted.pid" \
        >"$WORK/danted.log" 2>&1 &
    PIDS+=($!)
}

# redsocks in X (CPU 1) in front of the same danted, reached by REDIRECT of Z:9020 and Z:9021
# from lan0 (a table of the benchmark's own, in X's namespace only). Sets RS_PID. Extra
# arguments run redsocks under them (e.g. chrt -f PRIO).
start_redsocks() {
    cat >"$WORK/redsocks.conf" <<REDSOCKS
base { log_debug = off; log_info = off; log = "file:/dev/null"; daemon = off; redirector = iptables; }
redsocks { local_ip = 0.0.0.0; local_port = 12345; ip = $Z; port = 1080; type = socks5; }
REDSOCKS
    in_x nft -f - <<NFT
table ip tpbench_redsocks {
    chain pre { type nat hook prerouting priority dstnat; iifname "lan0" ip daddr $Z tcp dport { 9020, 9021 } redirect to :12345; }
}
NFT
    ip netns exec "$LAB_PREFIX-x" "$@" taskset -c 1 redsocks -c "$WORK/redsocks.conf" \
        >"$WORK/redsocks.log" 2>&1 &
    RS_PID=$!
    PIDS+=($RS_PID)
    for _ in $(seq 50); do in_x ss -Htln | grep -q ':12345 ' && break; sleep 0.1; done
    sleep 0.5
}
