#!/usr/bin/env bash
# e2e: connection churn through the gateway never stalls a client (issue 13 item 10). Y opens
# HTTP/1.1 requests with `Connection: close` to Z:80, 64 at a time, for a few seconds; nginx on Z
# closes first, so X's client-side sockets end in TIME_WAIT. Y's port range is narrowed (inside
# Y's own namespace) so its ports come round again within the TIME_WAIT period: new SYNs meet
# X's TIME_WAIT sockets of the same four-tuple. The guard: no SYN retransmission in Y
# (TcpExt TCPSynRetrans from Y's /proc/net/netstat) behind `tpengine -c`'s table, for
# `source: proxy` and `source: client`. A control first runs the kernel documentation's
# textbook rules (socket/divert rule and tproxy rule in ONE chain) with `tpengine relay -t`,
# then the same rules split into two base chains (must be clean, as docs/config.md says): the
# one-chain `accept` skips the tproxy rule, whose TIME_WAIT handling would hand such a SYN to the
# listener; the TIME_WAIT socket answers it with a bare ACK instead (Y resets and retransmits).
source "$(dirname "$0")/lib.sh"
e2e_init churn "$1" --spoof-route
z_services
x_no_forwarding
echo "small" >"$TMP/www/small.txt"
in_y sysctl -qw net.ipv4.ip_local_port_range="40000 40511"
DURATION=${CHURN_SECONDS:-4}

CHURN='import socket, sys, threading, time
host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
req = b"GET /small.txt HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n"
end = time.monotonic() + secs
tally = {"ok": 0, "fail": 0}
lock = threading.Lock()
def run():
    while time.monotonic() < end:
        try:
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(req)
            got = b""
            while True:
                d = s.recv(4096)
                if not d: break
                got += d
            s.close()
            k = "ok" if got.startswith(b"HTTP/1.1 200") else "fail"
        except OSError:
            k = "fail"
        with lock:
            tally[k] += 1
ts = [threading.Thread(target=run) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print("ok=%d fail=%d" % (tally["ok"], tally["fail"]))'

syn_retrans() {  # Y's TcpExt TCPSynRetrans (Y's namespace is the lab's own: it starts at 0)
    in_y awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) n[$i] = i; h = 1 } else print $n["TCPSynRetrans"] }' /proc/net/netstat
}

churn() {  # prints "ok=N fail=N retrans=N x_time_wait=N" for one churn run
    local before after out
    before=$(syn_retrans)
    out=$(in_y timeout 60 python3 -c "$CHURN" "$Z_ADDR" 80 64 "$DURATION")
    after=$(syn_retrans)
    local tw
    tw=$(in_x ss -Htan state time-wait | wc -l)
    echo "$out retrans=$((after - before)) x_time_wait=$tw"
    [ -n "${CHURN_DEBUG:-}" ] && in_y nstat -az 2>/dev/null | grep -iE "retrans|Syn|RST|OutRsts" >&2
    true
}

# --- controls: the textbook rules (`ip rule fwmark 1`, `tpengine relay -t`), first with the
# socket rule and the tproxy rule in one chain, then the same two rules in two base chains
# (`relay -t` alone: `-T` reuses the client port upstream, where Z holds the TIME_WAIT).
textbook() {  # one|two: prints the churn result
    local tproxy='iifname "lan0" meta l4proto tcp tcp dport 80 tproxy ip to :50080 meta mark set 1 accept'
    {
        echo "table inet textbook {"
        echo "    chain divert {"
        echo "        type filter hook prerouting priority mangle; policy accept;"
        echo "        meta l4proto tcp socket transparent 1 meta mark set 1 accept"
        if [ "$1" = one ]; then
            echo "        $tproxy"
        else
            echo "    }"
            echo "    chain pre {"
            echo "        type filter hook prerouting priority mangle + 1; policy accept;"
            echo "        $tproxy"
        fi
        echo "    }"
        echo "}"
    } >"$TMP/textbook-$1.nft"
    in_x nft -f "$TMP/textbook-$1.nft" || die "nft rejected $TMP/textbook-$1.nft"
    in_x ip -4 rule add fwmark 1 lookup 100
    in_x ip -4 route add local 0.0.0.0/0 dev lo table 100
    tp_relay "textbook_$1" -t 50080 original
    churn
    tp_stop "textbook_$1" >/dev/null || true
    in_x nft delete table inet textbook
    in_x ip -4 rule del fwmark 1 lookup 100
    in_x ip -4 route del local 0.0.0.0/0 dev lo table 100
    in_x ss -K state time-wait >/dev/null 2>&1 || true
}
res=$(textbook one)
n=$(sed -n 's/.*retrans=\([0-9]*\).*/\1/p' <<<"$res")
if [ "${n:-0}" -gt 0 ]; then
    ok "control: textbook rules in one chain: $n SYN retransmissions in Y ($res)"
else
    log "note: textbook rules in one chain saw no SYN retransmission this time ($res)"
fi
res=$(textbook two)
n=$(sed -n 's/.*retrans=\([0-9]*\).*/\1/p' <<<"$res")
[ "$n" = 0 ] && ok "the same textbook rules in two base chains: no SYN retransmission ($res)" ||
    fail "textbook rules in two base chains: $res"

# --- the guard: tpengine -c's generated table, source: proxy and source: client
for source in proxy client; do
    tp_config "gen_$source" <<YAML
nftables: {table: tpengine_churn}
listeners:
  - name: tp
    address: "::"
    port: 50080
    transparent: true
    upstream: {to: original, source: $source}
rules:
  - name: lab-web
    interfaces: [lan0]
    destinations: [198.51.100.0/24]
    ports: [80]
    action: tproxy
    listener: tp
YAML
    res=$(churn)
    tp_stop "gen_$source" || fail "tpengine -c (source: $source) exited non-zero at stop"
    ok_n=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$res")
    fail_n=$(sed -n 's/.*fail=\([0-9]*\).*/\1/p' <<<"$res")
    retrans=$(sed -n 's/.*retrans=\([0-9]*\).*/\1/p' <<<"$res")
    [ "${ok_n:-0}" -gt 0 ] && [ "$fail_n" = 0 ] && [ "$retrans" = 0 ] &&
        ok "generated table, source: $source: churn without a single SYN retransmission ($res)" ||
        fail "generated table, source: $source: $res"
    in_x ss -K state time-wait >/dev/null 2>&1 || true
done
