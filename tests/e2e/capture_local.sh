#!/usr/bin/env bash
# e2e 9, capture_local: X's OWN outgoing connections to Z go through tpengine too (a route-type
# output chain marks them, the policy route sends them back in through lo, tproxy takes them).
# The relay's upstream carries the bypass mark, so it is not caught again (no loop). Y's
# forwarded connections are caught by the same rule. IPv4 and IPv6.
source "$(dirname "$0")/lib.sh"
e2e_init capture_local "$1"
z_services
tp_config local -v <<YAML
nftables: {table: tpengine_e2e}
capture_local: true
listeners:
  - {name: tp, address: "::", port: 50080, transparent: true, upstream: {to: original, source: proxy}}
rules:
  - {name: to-z, protocol: tcp, destinations: [198.51.100.0/24, "2001:db8:2::/64"], ports: [80, 8080], action: tproxy, listener: tp}
YAML
logged() {  # LABEL: tpengine's log has a line for this probe's client address
    local cl
    cl=$(field client_local "$TMP/who-$1.txt")
    for _ in $(seq 20); do norm <"$TMP/local.log" | grep -F "client $cl " >/dev/null && break; sleep 0.1; done
    norm <"$TMP/local.log" | grep -F "client $cl " >/dev/null && ok "$1: tpengine logged client $cl" ||
        fail "$1: no log line for client $cl: $(tail -3 "$TMP/local.log")"
}
WHO_FROM=x who local-v4 "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
logged local-v4
WHO_FROM=x who local-v6 "$Z_ADDR6" 8080 "$Z_ADDR6" "$X_WAN6" yes
logged local-v6
who lan-v4 "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
logged lan-v4
code=$(in_x curl -sS -g --max-time 10 -o "$TMP/local-curl.out" -w '%{http_code}' "http://$Z_ADDR/index.html" || true)
[ "$code" = 200 ] && [ "$(sha256sum <"$TMP/local-curl.out" | cut -d' ' -f1)" = "$PAGE_SHA" ] &&
    ok "curl on X itself through tpengine: 200, body intact" || fail "curl on X itself: $code"
x_no_close_wait capture-local
tp_stop local || fail "tpengine -c exited non-zero at stop"
show_table
