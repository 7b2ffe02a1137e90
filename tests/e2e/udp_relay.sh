#!/usr/bin/env bash
# `tpengine relay -u`, the tcprdr set-ups for UDP, IPv4 and IPv6, forwarding off on X:
#   none    relay -u 57101 Z 7101       Y sends to X; Z sees X; the answer comes from X
#   -T      relay -u -T 57102 Z 7102    Y sends to X; Z sees Y's address and port (route back
#                                       via X, the lab's UDP divert); the answer comes from X
#   -t -T   relay -u -t -T 57103 original + TPROXY: Y sends to Z; Z sees Y's address and port;
#                                       the answer comes from Z's own address and port
#   -t      relay -u -t 57104 original + TPROXY: Y sends to Z; Z sees X; answer from Z
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/udp_lib.sh"
e2e_init udp_relay "$1" --spoof-route
z_udp_services
x_no_forwarding
x_nft_lab_udp "7103:57103 7104:57104"
tp_relay ru1 -u 57101 "$Z_ADDR" 7101
tp_relay ru1b -u 57111 "$Z_ADDR6" 7101
tp_relay ru2 -u -T 57102 "$Z_ADDR" 7102
tp_relay ru2b -u -T 57112 "$Z_ADDR6" 7102
tp_relay ru3 -u -t -T 57103 original
tp_relay ru4 -u -t 57104 original

uwho relay-u-v4 "$X_LAN" 57101 "$X_WAN"
uwho relay-u-v6 "$X_LAN6" 57111 "$X_WAN6"
uwho relay-u-T-v4 "$X_LAN" 57102 client-port
uwho relay-u-T-v6 "$X_LAN6" 57112 client-port
uwho relay-u-tT-v4 "$Z_ADDR" 7103 client-port
uwho relay-u-tT-v6 "$Z_ADDR6" 7103 client-port
uwho relay-u-t-v4 "$Z_ADDR" 7104 "$X_WAN"
uwho relay-u-t-v6 "$Z_ADDR6" 7104 "$X_WAN6"

for r in ru1 ru1b ru2 ru2b ru3 ru4; do
    tp_stop "$r" && ok "relay $r stopped cleanly on SIGTERM" || fail "relay $r did not stop cleanly"
done
show_table
