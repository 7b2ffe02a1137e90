#!/usr/bin/env bash
# e2e 4, tcprdr -T: `tpengine relay -T 50080 Z 80`, Y dials X:50080. The upstream socket is
# transparent and bound to Y's address and port, so Z sees Y; Z answers Y's address via its static
# route back through X, and X's divert rule (socket transparent -> mark -> local table) delivers
# those replies to the transparent socket instead of forwarding them to Y.
source "$(dirname "$0")/lib.sh"
e2e_init relay_T "$1" --spoof-route
z_services
x_no_forwarding  # X does not forward in this set-up: it relays
# First without X's divert rule: Z's SYN-ACK to Y's address is not for X to deliver locally, so
# the spoofed upstream connect cannot complete and Y's connection is closed.
tp_relay nodivert -T --connect-timeout 1s 50090 "$Z_ADDR" 8080
if in_y $PEER client --timeout 4 "$X_LAN" 50090 >"$TMP/nodivert.txt" 2>&1; then
    fail "relay-T without the divert rule: the connection completed: $(cat "$TMP/nodivert.txt")"
else
    ok "relay-T without the divert rule fails as expected ($(field error "$TMP/nodivert.txt"))"
fi
tp_stop nodivert || true
x_nft_lab ""
relays -T
who relay-T "$X_LAN" 50081 "$X_LAN" client-port yes
check_programs relay-T "$X_LAN" 50080 55201 59000
x_no_close_wait relay-T
stop_relays
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "relay-T: X's conntrack table is empty: no connection tracking involved" ||
    fail "relay-T: X's conntrack table holds $n entries"
show_table
