#!/usr/bin/env bash
# e2e 2, REDIRECT: a `redirect` rule sends Y's connections to Z:PORT to a tpengine listener on X
# (destination rewritten to X's own address, conntrack). tpengine recovers the original
# destination (SO_ORIGINAL_DST), logs it and connects there itself: Z sees X; Y sees Z's address
# (conntrack undoes the rewrite on the replies). Z needs no route back. IPv4 and IPv6.
source "$(dirname "$0")/lib.sh"
e2e_init redirect "$1"
z_services
# REDIRECT delivers locally, X need not forward. (--check only warns about it.)
x_no_forwarding
tp_config redirect -v <<YAML
nftables: {table: tpengine_e2e}
listeners:
  - name: redir
    address: "::"
    port: 50080
    transparent: false
    upstream: {to: original, source: proxy}
rules:
  - name: lab-redirect
    interfaces: [lan0]
    protocol: tcp
    destinations: [198.51.100.0/24, "2001:db8:2::/64"]
    ports: [80, 8080, 5201, 9000]
    action: redirect
    listener: redir
YAML
who redirect "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" "yes:$X_LAN:50080"
cl=$(field client_local "$TMP/who-redirect.txt")
# The per-connection log line names the client and the recovered original destination.
# (A dual-stack listener may log Y as [::ffff:192.0.2.2]: norm folds that to 192.0.2.2.)
conn_log() { norm <"$TMP/redirect.log" | grep -F "$1" || true; }
for _ in $(seq 20); do [ -n "$(conn_log "$cl")" ] && break; sleep 0.1; done
if conn_log "$cl" | grep -Fe "$Z_ADDR:8080" >/dev/null; then
    ok "redirect: original destination $Z_ADDR:8080 recovered and logged: $(conn_log "$cl" | head -1)"
else
    fail "redirect: no log line with client $cl and original destination $Z_ADDR:8080: $(tail -5 "$TMP/redirect.log")"
fi
check_programs redirect "$Z_ADDR" 80 5201 9000
# IPv6: IP6T_SO_ORIGINAL_DST, the listener on :: serves both families.
who redirect-v6 "$Z_ADDR6" 8080 "$Z_ADDR6" "$X_WAN6" "yes:[$X_LAN6]:50080"
cl=$(field client_local "$TMP/who-redirect-v6.txt")
for _ in $(seq 20); do [ -n "$(conn_log "$cl")" ] && break; sleep 0.1; done
conn_log "$cl" | grep -Fe "[$Z_ADDR6]:8080" >/dev/null &&
    ok "redirect-v6: original destination [$Z_ADDR6]:8080 recovered and logged" ||
    fail "redirect-v6: no log line with $cl and [$Z_ADDR6]:8080: $(tail -3 "$TMP/redirect.log")"
check_programs redirect-v6 "$Z_ADDR6" 80 5201 9000 6
x_no_close_wait redirect
tp_stop redirect || fail "tpengine -c exited non-zero at stop"
in_x nft list tables | grep tpengine_e2e >/dev/null && fail "redirect: table left after stop"
n=$(x_conntrack_entries)
[ "$n" != unknown ] && [ "$n" -gt 0 ] && ok "redirect: X's conntrack table holds $n entries (NAT needs connection tracking)" ||
    fail "redirect: X's conntrack table is empty"
show_table
