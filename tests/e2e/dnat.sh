#!/usr/bin/env bash
# e2e 1, DNAT: a `dnat` rule from `tpengine -c`, no relay. Y dials X's own address; the kernel
# rewrites the destination to Z and forwards (ip_forward, conntrack). Z sees Y (and answers it via
# the route back through X, where conntrack rewrites the source back); Y believes it talks to X;
# X holds no socket of the connection.
source "$(dirname "$0")/lib.sh"
e2e_init dnat "$1" --spoof-route
z_services
tp_config dnat <<YAML
nftables: {table: tpengine_e2e}
rules:
  - {name: fwd-web, interfaces: [lan0], protocol: tcp, destinations: [$X_LAN/32], ports: [80], action: dnat, to: "$Z_ADDR:80"}
  - {name: fwd-probe, interfaces: [lan0], protocol: tcp, destinations: [$X_LAN/32], ports: [8080], action: dnat, to: "$Z_ADDR:8080"}
  - {name: fwd-iperf, interfaces: [lan0], protocol: tcp, destinations: [$X_LAN/32], ports: [5201], action: dnat, to: "$Z_ADDR:5201"}
  - {name: fwd-bulk, interfaces: [lan0], protocol: tcp, destinations: [$X_LAN/32], ports: [9000], action: dnat, to: "$Z_ADDR:9000"}
  - {name: fwd-probe6, interfaces: [lan0], protocol: tcp, destinations: ["$X_LAN6/128"], ports: [8080], action: dnat, to: "[$Z_ADDR6]:8080"}
YAML
who dnat "$X_LAN" 8080 "$X_LAN" "$Y_ADDR" no
in_x conntrack -L -p tcp --dport 8080 2>/dev/null | grep "dst=$X_LAN.*src=$Z_ADDR" >/dev/null &&
    ok "dnat: X's conntrack holds the translation $X_LAN -> $Z_ADDR" ||
    log "note: conntrack tool could not show the entry (not asserted)"
check_programs dnat "$X_LAN" 80 5201 9000
who dnat-v6 "$X_LAN6" 8080 "$X_LAN6" "$Y_ADDR6" no
# DNAT is routing: with forwarding off in X, Y's next connection gets nowhere.
x_no_forwarding
if in_y $PEER client --timeout 2 "$X_LAN" 8080 >"$TMP/dnat-noforward.txt" 2>&1; then
    fail "dnat: a connection got through with ip_forward off"
else
    ok "dnat: with ip_forward off in X, Y's connection fails ($(field error "$TMP/dnat-noforward.txt"))"
fi
tp_stop dnat || fail "tpengine -c exited non-zero at stop"
in_x nft list tables | grep tpengine_e2e >/dev/null && fail "dnat: table left after stop"
n=$(x_conntrack_entries)
[ "$n" != unknown ] && [ "$n" -gt 0 ] && ok "dnat: X's conntrack table holds $n entries (NAT needs connection tracking)" ||
    fail "dnat: X's conntrack table is empty"
show_table
