#!/usr/bin/env bash
# e2e 4, tcprdr -T: `tpengine relay -T 50080 Z 80`, Y dials X:50080. The upstream socket is
# transparent and bound to Y's address and port, so Z sees Y; Z answers Y's address via its static
# route back through X, and X's divert rule (socket transparent -> mark -> local table) delivers
# those replies to the transparent socket instead of forwarding them to Y.
source "$(dirname "$0")/lib.sh"
e2e_init relay_T "$1" --spoof-route
z_services
x_no_forwarding  # X does not forward in this set-up: it relays
x_nft_lab ""
relays -T
who relay-T "$X_LAN" 50081 "$X_LAN" client-port yes
check_programs relay-T "$X_LAN" 50080 55201 59000
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "relay-T: X's conntrack table is empty: no connection tracking involved" ||
    fail "relay-T: X's conntrack table holds $n entries"
show_table
