#!/usr/bin/env bash
# e2e 6, tcprdr -t alone with TPROXY: Y dials Z:80; X intercepts with `tpengine relay -t 50080 Z 80`
# and connects from its own address. Y sees Z, Z sees X. Z needs no route back to Y's subnet.
source "$(dirname "$0")/lib.sh"
e2e_init tproxy_t "$1"
z_services
x_no_forwarding  # X does not forward in this set-up: it relays
x_nft_lab "$RELAY_MAP"
relays -t
who tproxy-t "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
check_programs tproxy-t "$Z_ADDR" 80 5201 9000
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "tproxy-t: X's conntrack table is empty: no connection tracking involved" ||
    fail "tproxy-t: X's conntrack table holds $n entries"
show_table
