#!/usr/bin/env bash
# UDP through `tpengine -c` (issue 9), IPv4 and IPv6, forwarding off on X: three UDP listeners
# with source proxy, client and client-port behind tproxy rules. For each, Z's UDP server
# reports the source it saw and Y checks the answer came from Z's own address and port. One
# client socket to two of Z's ports keeps one upstream mapping. A client the rules leave alone
# (bypass) still reaches Z through X's forwarding while reply sockets bound to Z's port exist:
# the UDP divert never hands its datagrams to them. src_valid_mark=1 is refused at start.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/udp_lib.sh"
e2e_init udp_config "$1" --spoof-route
z_udp_services
y_second_address
before=$(x_kernel_state)
x_no_forwarding
tp_config udp <<YAML
nftables: {table: tpengine_e2e}
listeners:
  - {name: u-proxy, port: 50101, protocol: udp, upstream: {to: original, source: proxy}}
  - {name: u-client, port: 50102, protocol: udp, upstream: {to: original, source: client}}
  - {name: u-cport, port: 50103, protocol: udp, upstream: {to: original, source: client-port}}
rules:
  - {name: other-client, sources: ["$Y_ADDR_B/32", "$Y_ADDR6_B/128"], action: bypass}
  - {name: via-proxy, interfaces: [lan0], ports: [7101, 7104], destinations: [198.51.100.0/24, "2001:db8:2::/64"], action: tproxy, listener: u-proxy}
  - {name: via-client, interfaces: [lan0], ports: [7102], destinations: [198.51.100.0/24, "2001:db8:2::/64"], action: tproxy, listener: u-client}
  - {name: via-cport, interfaces: [lan0], ports: [7103], destinations: [198.51.100.0/24, "2001:db8:2::/64"], action: tproxy, listener: u-cport}
YAML
in_x nft list chain inet tpengine_e2e divert >"$TMP/divert.txt"
grep -q 'meta l4proto udp socket transparent 1 socket mark' "$TMP/divert.txt" &&
    ok "divert: UDP only for bypass-marked (upstream) sockets" ||
    fail "divert chain: $(cat "$TMP/divert.txt")"

uwho proxy-v4 "$Z_ADDR" 7101 "$X_WAN"
uwho client-v4 "$Z_ADDR" 7102 "$Y_ADDR"
uwho cport-v4 "$Z_ADDR" 7103 client-port
uwho eim-v4 "$Z_ADDR" 7101 "$X_WAN" "" 7104
uwho proxy-v6 "$Z_ADDR6" 7101 "$X_WAN6"
uwho client-v6 "$Z_ADDR6" 7102 "$Y_ADDR6"
uwho cport-v6 "$Z_ADDR6" 7103 client-port
uwho eim-v6 "$Z_ADDR6" 7101 "$X_WAN6" "" 7104

# A reload (SIGHUP, one more rule) keeps live flows: the same client socket's next datagram
# leaves from the same upstream address and port as before the reload.
sed 's/ports: \[7101, 7104\]/ports: [7101, 7104, 7105]/' "$TMP/udp.yaml" >"$TMP/udp.new"
# shellcheck disable=SC2154  # TP_PID_udp is set by tp_start (eval)
cat >"$TMP/reload.sh" <<SCRIPT
#!/bin/sh
cp "$TMP/udp.new" "$TMP/udp.yaml"
kill -HUP $TP_PID_udp
for i in \$(seq 100); do grep -q reloaded "$TMP/udp.log" && exit 0; sleep 0.1; done
exit 1
SCRIPT
chmod +x "$TMP/reload.sh"
UWHO_BETWEEN="$TMP/reload.sh" uwho reload-keeps-v4 "$Z_ADDR" 7101 "$X_WAN" "" 7104
grep -q reloaded "$TMP/udp.log" && ok "the reload happened between the two datagrams" ||
    fail "no reload logged: $(tail -3 "$TMP/udp.log")"

# Reply sockets bound to Z:7103 exist now (the answers above left from them). A client the
# rules bypass is forwarded by X; were its datagrams diverted to a reply socket, nothing would
# answer.
in_x sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
uwho bypassed-v4 "$Z_ADDR" 7103 "$Y_ADDR_B" "$Y_ADDR_B"
uwho bypassed-v6 "$Z_ADDR6" 7103 "$Y_ADDR6_B" "$Y_ADDR6_B"
x_no_forwarding

tp_stop udp || fail "tpengine -c exited non-zero at stop"
after=$(x_kernel_state)
[ "$before" = "$after" ] && ok "stop: X's tables, rules and routes are as before" ||
    fail "stop left state behind: $(diff <(echo "$before") <(echo "$after"))"

# src_valid_mark=1 makes TPROXY drop silently: refused at start, nothing applied.
in_x sysctl -qw net.ipv4.conf.lan0.src_valid_mark=1
if in_x timeout 20 "$TPENGINE" -c "$TMP/udp.yaml" >"$TMP/vmark.log" 2>&1; then
    fail "start with src_valid_mark=1 succeeded"
elif grep -q 'net.ipv4.conf.lan0.src_valid_mark is 1' "$TMP/vmark.log" &&
    grep -q 'nothing applied' "$TMP/vmark.log"; then
    ok "start with lan0.src_valid_mark=1 refused: $(grep -m1 src_valid_mark "$TMP/vmark.log" | cut -c1-90)..."
else
    fail "start with src_valid_mark=1: $(cat "$TMP/vmark.log")"
fi
[ "$before" = "$(x_kernel_state)" ] || fail "the refused start changed X's kernel state"
in_x sysctl -qw net.ipv4.conf.lan0.src_valid_mark=0
show_table
