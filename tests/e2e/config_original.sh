#!/usr/bin/env bash
# e2e 7, the -t -T set-up through `tpengine -c`: one tproxy rule for several destination ports
# (80, 8080, 5201, 9000: none has a listener on X), one transparent listener with `to: original`
# and `source: client`, over IPv4 and IPv6. Y sees Z; Z sees Y's address; X holds both legs.
# At stop, nothing of tpengine's is left in X.
source "$(dirname "$0")/lib.sh"
e2e_init config_original "$1" --spoof-route
z_services
before=$(x_kernel_state)
# TPROXY delivers locally, no forwarding. (--check only warns about it.)
x_no_forwarding
tp_config orig <<YAML
nftables: {table: tpengine_e2e}
listeners:
  - name: tp
    address: "::"
    port: 50080
    transparent: true
    upstream: {to: original, source: client}
rules:
  - name: lab-all-ports
    interfaces: [lan0]
    protocol: tcp
    destinations: [198.51.100.0/24, "2001:db8:2::/64"]
    ports: [80, 7000, 8080, 5201, 9000]
    action: tproxy
    listener: tp
YAML
bound=$(in_x ss -Htln | awk '{print $4}' | grep -E ':(80|7000|8080|5201|9000)$' || true)
[ -z "$bound" ] || fail "something listens on X on a rule's port: $bound"
who orig-v4 "$Z_ADDR" 8080 "$Z_ADDR" "$Y_ADDR" yes
check_programs orig-v4 "$Z_ADDR" 80 5201 9000
check_many orig-v4 "$Z_ADDR" 7000 1000
who orig-v6 "$Z_ADDR6" 8080 "$Z_ADDR6" "$Y_ADDR6" yes
check_programs orig-v6 "$Z_ADDR6" 80 5201 9000 6
x_no_close_wait orig
tp_stop orig || fail "tpengine -c exited non-zero at stop"
after=$(x_kernel_state)
[ "$before" = "$after" ] && ok "stop: X's tables, rules and routes are as before" ||
    fail "stop left state behind: $(diff <(echo "$before") <(echo "$after"))"
n=$(x_conntrack_entries)
[ "$n" = 0 ] && ok "X's conntrack table is empty: no connection tracking involved" ||
    fail "X's conntrack table holds $n entries"
show_table
