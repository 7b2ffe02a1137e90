#!/usr/bin/env bash
# e2e 2, REDIRECT: a `redirect` rule sends Y's connections to Z:PORT to a tpengine listener on X
# (destination rewritten to X's own address, conntrack). tpengine recovers the original
# destination (SO_ORIGINAL_DST), logs it and connects there itself: Z sees X; Y sees Z's address
# (conntrack undoes the rewrite on the replies). Z needs no route back. IPv4 and IPv6. A request
# to one of X's own addresses is never redirected.
source "$(dirname "$0")/lib.sh"
e2e_init redirect "$1"
z_services
# REDIRECT delivers locally, X need not forward. (--check only warns about it.)
x_no_forwarding
tp_config redirect -v <<YAML
nftables: {table: tpengine_e2e}
log: {connections: true}
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
# Its close record names the rule that sent it: the listener's only rule (issue 11).
close_rec() { norm <"$TMP/redirect.log" | grep -F "event=close" | grep -F "client=$1 " || true; }
for _ in $(seq 30); do [ -n "$(close_rec "$cl")" ] && break; sleep 0.1; done
if close_rec "$cl" | grep -F "original=$Z_ADDR:8080 " | grep -F " rule=lab-redirect " >/dev/null; then
    ok "redirect: the close record names rule lab-redirect: $(close_rec "$cl" | head -1)"
else
    fail "redirect: no close record with client $cl, original $Z_ADDR:8080 and rule=lab-redirect: $(tail -5 "$TMP/redirect.log")"
fi
# A connection straight to the listener's port came through no rule: its record names none.
# (Bound first, so its address is known even when the relay's reset, a loop refused, comes
# before connect() returns.)
direct=$(in_y timeout 10 python3 -c "
import socket
c = socket.socket()
c.settimeout(5)
c.bind(('$Y_ADDR', 0))
print('%s:%d' % c.getsockname(), flush=True)
try:
    c.connect(('$X_LAN', 50080))
    c.recv(1)
except OSError:
    pass" 2>&1) || true
for _ in $(seq 30); do [ -n "$direct" ] && [ -n "$(close_rec "$direct")" ] && break; sleep 0.1; done
if [ -z "$direct" ] || [ -z "$(close_rec "$direct")" ]; then
    fail "redirect: no close record for the direct connection ${direct:-(none made)}: $(tail -3 "$TMP/redirect.log")"
elif close_rec "$direct" | grep -F " rule=" >/dev/null; then
    fail "redirect: a direct connection's close record names a rule: $(close_rec "$direct")"
else
    ok "redirect: a direct connection's close record names no rule: $(close_rec "$direct" | head -1)"
fi
check_programs redirect "$Z_ADDR" 80 5201 9000
# X's own address is never redirected (issue 13 item 2): X_WAN is inside the rule's
# destinations, yet Y's request to a service of X's own on X_WAN:8080 reaches that service
# directly (it sees Y), not through tpengine (it would see X, and tpengine would log it).
own_addr_check() {  # LABEL LISTEN_ADDR CONNECT_ADDR FAMILY Y_IP
    local label=$1 la=$2 ca=$3 fam=$4 yip=$5 got
    bg ip netns exec "$LAB_PREFIX-x" timeout 20 python3 -c "
import socket
s = socket.socket(socket.AF_INET$fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$la', 8080)); s.listen()
c, peer = s.accept(); c.sendall((peer[0] + '\\n').encode()); c.close()"
    wait_listen in_x 8080 || { fail "$label: X's own service did not start"; return; }
    got=$(in_y timeout 10 python3 -c "
import socket
c = socket.create_connection(('$ca', 8080), timeout=5)
print(c.recv(100).decode().strip())" 2>&1 | norm) || true
    [ "$got" = "$yip" ] && ok "$label: Y's request to X's own $ca:8080 reached X's service directly (it saw $got)" ||
        fail "$label: Y's request to X's own $ca:8080 was caught: X's service saw '$got', expected $yip"
    norm <"$TMP/redirect.log" | grep -F "original $( [ "$fam" = 6 ] && echo "[$ca]" || echo "$ca"):8080" >/dev/null &&
        fail "$label: tpengine relayed a connection to X's own address: $(tail -3 "$TMP/redirect.log")"
    for _ in $(seq 50); do wait_listen in_x 8080 1 || break; sleep 0.1; done
}
own_addr_check redirect-own-address "$X_WAN" "$X_WAN" "" "$Y_ADDR"
# IPv6: IP6T_SO_ORIGINAL_DST, the listener on :: serves both families.
who redirect-v6 "$Z_ADDR6" 8080 "$Z_ADDR6" "$X_WAN6" "yes:[$X_LAN6]:50080"
cl=$(field client_local "$TMP/who-redirect-v6.txt")
for _ in $(seq 20); do [ -n "$(conn_log "$cl")" ] && break; sleep 0.1; done
conn_log "$cl" | grep -Fe "[$Z_ADDR6]:8080" >/dev/null &&
    ok "redirect-v6: original destination [$Z_ADDR6]:8080 recovered and logged" ||
    fail "redirect-v6: no log line with $cl and [$Z_ADDR6]:8080: $(tail -3 "$TMP/redirect.log")"
check_programs redirect-v6 "$Z_ADDR6" 80 5201 9000 6
own_addr_check redirect-own-address-v6 "$X_WAN6" "$X_WAN6" 6 "$Y_ADDR6"
x_no_close_wait redirect
tp_stop redirect || fail "tpengine -c exited non-zero at stop"
in_x nft list tables | grep tpengine_e2e >/dev/null && fail "redirect: table left after stop"
n=$(x_conntrack_entries)
[ "$n" != unknown ] && [ "$n" -gt 0 ] && ok "redirect: X's conntrack table holds $n entries (NAT needs connection tracking)" ||
    fail "redirect: X's conntrack table is empty"
show_table
