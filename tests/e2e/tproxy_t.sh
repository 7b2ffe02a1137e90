#!/usr/bin/env bash
# e2e 6, tcprdr -t alone with TPROXY: Y dials Z:80; X intercepts with `tpengine relay -t 50080 Z 80`
# and connects from its own address. Y sees Z, Z sees X. Z needs no route back to Y's subnet.
source "$(dirname "$0")/lib.sh"
e2e_init tproxy_t "$1"
z_services
x_no_forwarding  # X does not forward in this set-up: it relays
x_nft_lab "$RELAY_MAP"
# First a listener WITHOUT -t on the tproxy port: nft_tproxy only hands packets to transparent
# sockets, so nothing takes Y's connection (and X does not forward): it times out.
tp_relay plain 50081 "$Z_ADDR" 8080
if in_y $PEER client --timeout 2 "$Z_ADDR" 8080 >"$TMP/not-t.txt" 2>&1; then
    fail "tproxy without -t: the connection completed: $(cat "$TMP/not-t.txt")"
else
    ok "tproxy to a listener without -t fails as expected ($(field error "$TMP/not-t.txt"))"
fi
tp_stop plain || true
relays -t
who tproxy-t "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
check_programs tproxy-t "$Z_ADDR" 80 5201 9000
x_no_close_wait tproxy-t
stop_relays
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "tproxy-t: X's conntrack table is empty: no connection tracking involved" ||
    fail "tproxy-t: X's conntrack table holds $n entries"
show_table
