#!/usr/bin/env bash
# e2e 3, tcprdr with no flags: `tpengine relay 50080 Z 80`, Y dials X:50080. Plain sockets, no
# kernel help: Y knows only X, Z knows only X. Z needs no route back to Y's subnet.
source "$(dirname "$0")/lib.sh"
e2e_init relay_plain "$1"
z_services
x_no_forwarding  # X does not forward in this set-up: it relays
relays
who relay-plain "$X_LAN" 50081 "$X_LAN" "$X_WAN" yes
check_programs relay-plain "$X_LAN" 50080 55201 59000
x_no_close_wait relay-plain
stop_relays
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "relay-plain: X's conntrack table is empty: no connection tracking involved" ||
    fail "relay-plain: X's conntrack table holds $n entries"
show_table
