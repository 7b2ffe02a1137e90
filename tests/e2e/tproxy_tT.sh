#!/usr/bin/env bash
# e2e 5, tcprdr -t -T with TPROXY: Y dials Z:80 itself; X's tproxy rules hand the connection to
# `tpengine relay -t -T 50080 Z 80`, which connects from Y's address and port. Y sees Z, Z sees Y:
# neither knows X. Z needs the route back via X.
source "$(dirname "$0")/lib.sh"
e2e_init tproxy_tT "$1" --spoof-route
z_services
x_no_forwarding  # X does not forward in this set-up: it relays
x_nft_lab "$RELAY_MAP 7000:57000"
relays -t -T
tp_relay r57000 -t -T 57000 "$Z_ADDR" 7000
who tproxy-tT "$Z_ADDR" 8080 "$Z_ADDR" client-port yes
check_programs tproxy-tT "$Z_ADDR" 80 5201 9000
check_many tproxy-tT "$Z_ADDR" 7000 1000
x_no_close_wait tproxy-tT
stop_relays
tp_stop r57000 || fail "relay r57000 did not stop cleanly on SIGTERM"
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "tproxy-tT: X's conntrack table is empty: no connection tracking involved" ||
    fail "tproxy-tT: X's conntrack table holds $n entries"
show_table
