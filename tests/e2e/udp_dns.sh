#!/usr/bin/env bash
# DNS through UDP TPROXY (issue 9), forwarding off on X: dnsmasq on Z answers `dig` from Y
# (IPv4 and IPv6) through `tpengine -c` with source: client (Z's log shows Y's address), and
# dnsperf through it at a modest rate loses nothing. Then a dnsmasq bound to 0.0.0.0:53 and
# [::]:53 on X itself: interception still works, and a query to X's own address is answered
# by X's dnsmasq, not intercepted. Then a program on X's 0.0.0.0:53 without SO_REUSEADDR (the
# EADDRINUSE case for reply sockets bound to Z:53): the cause is logged, queries still answered.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/udp_lib.sh"
e2e_init udp_dns "$1" --spoof-route
for c in dnsmasq dig dnsperf; do command -v $c >/dev/null || skip "needs $c (tools/install-deps.sh)"; done
bg ip netns exec "$LAB_PREFIX-z" dnsmasq -k --user=root --pid-file="$TMP/dnsz.pid" --no-resolv \
    --no-hosts --bind-interfaces --listen-address="$Z_ADDR" --listen-address="$Z_ADDR6" \
    --address=/example.test/203.0.113.7 --address=/example.test/2001:db8:3::7 \
    --log-queries --log-facility="$TMP/dnsz.log" --cache-size=0
for _ in $(seq 50); do in_z ss -Huln "sport = :53" | grep -q . && break; sleep 0.1; done
x_no_forwarding
YAML_TEXT="nftables: {table: tpengine_e2e}
listeners:
  - {name: dns, port: 50053, protocol: udp, upstream: {to: original, source: client}}
rules:
  - {name: lan-dns, interfaces: [lan0], ports: [53], destinations: [198.51.100.0/24, \"2001:db8:2::/64\"], action: tproxy, listener: dns}"
tp_config dns <<<"$YAML_TEXT"

dig_check() {  # LABEL SERVER TYPE EXPECTED
    local got
    got=$(in_y dig +short +time=3 +tries=1 @"$2" example.test "$3" 2>&1 | head -1) || true
    [ "$got" = "$4" ] && ok "$1: dig @$2 example.test $3 -> $got" ||
        fail "$1: dig @$2 example.test $3 -> '$got', expected $4"
}
dig_check dns-v4 "$Z_ADDR" A 203.0.113.7
dig_check dns-v6 "$Z_ADDR6" AAAA 2001:db8:3::7
grep -q "from $Y_ADDR\$" "$TMP/dnsz.log" && ok "Z's dnsmasq saw the query from Y ($Y_ADDR)" ||
    fail "Z's dnsmasq log has no query from $Y_ADDR: $(tail -3 "$TMP/dnsz.log")"
grep -q "from $Y_ADDR6\$" "$TMP/dnsz.log" && ok "Z's dnsmasq saw the query from Y ($Y_ADDR6)" ||
    fail "Z's dnsmasq log has no query from $Y_ADDR6"

# dnsperf: 4 clients, 200 queries/s in all for 3 s; every query must be answered.
printf 'example.test A\nexample.test AAAA\n' >"$TMP/queries"
in_y timeout 30 dnsperf -s "$Z_ADDR" -d "$TMP/queries" -c 4 -Q 200 -l 3 -t 2 >"$TMP/dnsperf.txt" 2>&1 || true
sent=$(awk '/Queries sent:/ {print $3}' "$TMP/dnsperf.txt")
lost=$(awk '/Queries lost:/ {print $3}' "$TMP/dnsperf.txt")
if [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$lost" = 0 ]; then
    ok "dnsperf through TPROXY: $sent queries sent, 0 lost"
else
    fail "dnsperf: sent '$sent', lost '$lost': $(grep -E 'Queries|Error' "$TMP/dnsperf.txt" | tr '\n' ' ')"
fi
tp_stop dns || fail "tpengine -c exited non-zero at stop"

# A DNS server on X itself, bound to the wildcard :53 before tpengine starts: the reply
# sockets tpengine binds to Z:53 meet it.
bg ip netns exec "$LAB_PREFIX-x" dnsmasq -k --user=root --pid-file="$TMP/dnsx.pid" --no-resolv \
    --no-hosts --address=/example.test/192.0.2.99 --log-facility="$TMP/dnsx.log" --cache-size=0
for _ in $(seq 50); do in_x ss -Huln "sport = :53" | grep -q . && break; sleep 0.1; done
in_x ss -Hulnp "sport = :53" >"$TMP/x53.txt"
grep -q '0.0.0.0:53' "$TMP/x53.txt" && ok "X runs its own dnsmasq on 0.0.0.0:53" ||
    fail "X's dnsmasq is not on 0.0.0.0:53: $(cat "$TMP/x53.txt")"
tp_config dns2 <<<"$YAML_TEXT"
dig_check x-dnsmasq-v4 "$Z_ADDR" A 203.0.113.7
dig_check x-dnsmasq-v6 "$Z_ADDR6" AAAA 2001:db8:3::7
dig_check x-own-address "$X_LAN" A 192.0.2.99  # X's own address is never intercepted
if grep -qi 'in use\|EADDRINUSE' "$TMP/dns2.log"; then
    log "note: tpengine logged: $(grep -i -m1 'in use\|EADDRINUSE' "$TMP/dns2.log")"
fi
tp_stop dns2 || fail "tpengine -c exited non-zero at stop"

# A service on X's 0.0.0.0:53 WITHOUT SO_REUSEADDR (dnsmasq sets it; not every program does):
# no reply socket can be bound to Z:53. The engine logs the likely cause once and answers
# through its raw-socket fallback, still from Z:53: the query is answered.
for pid in "${BG_PIDS[@]}"; do
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$LAB_PREFIX-x" ] && kill "$pid" 2>/dev/null || true
done
for _ in $(seq 50); do in_x ss -Huln "sport = :53" | grep -q . || break; sleep 0.1; done
bg ip netns exec "$LAB_PREFIX-x" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
time.sleep(120)'
for _ in $(seq 50); do in_x ss -Huln "sport = :53" | grep -q . && break; sleep 0.1; done
tp_config dns3 <<<"$YAML_TEXT"
got=$(in_y dig +short +time=3 +tries=1 @"$Z_ADDR" example.test A 2>&1 | head -1) || true
grep -q 'cannot send replies from 198.51.100.2:53: address in use' "$TMP/dns3.log" &&
    ok "no-SO_REUSEADDR holder of 0.0.0.0:53: the cause is logged: $(grep -m1 'address in use' "$TMP/dns3.log" | cut -c1-120)..." ||
    fail "no-SO_REUSEADDR holder of 0.0.0.0:53: no cause logged: $(tail -3 "$TMP/dns3.log")"
[ "$got" = 203.0.113.7 ] && ok "no-SO_REUSEADDR holder of 0.0.0.0:53: the query is still answered ($got)" ||
    fail "no-SO_REUSEADDR holder of 0.0.0.0:53: dig got '$got'"
tp_stop dns3 || fail "tpengine -c exited non-zero at stop"
