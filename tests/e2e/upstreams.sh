#!/usr/bin/env bash
# e2e, issue 10: routes and upstreams through `tpengine -c` with a real SOCKS5 server (danted,
# on Z). Y's connections to Z are TPROXY'd in X and routed: by sniffed name (Host / SNI) or port
# through danted, a reject route, a SOCKS server that is down, a destination danted refuses, and
# the default direct. nginx's log on Z proves which way each went (danted connects from Z's own
# address, X directly from X_WAN). A server that speaks first gets its banner through a sniffing
# route. Counters say why each failure closed, and X's tpengine holds no more descriptors after.
source "$(dirname "$0")/lib.sh"
command -v danted >/dev/null || skip "needs danted (dante-server)"
e2e_init upstreams "$1"
z_services
x_no_forwarding

cat >"$TMP/danted.conf" <<EOF2
logoutput: $TMP/danted.log
internal: $Z_ADDR port = 1080
external: $Z_ADDR
external: $Z_ADDR6
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0/0 to: 0/0 }
socks block { from: 0/0 to: $Z_ADDR/32 port = 9999 log: connect error }
socks pass { from: 0/0 to: 0/0 log: connect disconnect }
EOF2
# danted resolves names asked for by CONNECT-by-name: an /etc/hosts for Z's namespace only
# (ip netns exec bind-mounts /etc/netns/NS/hosts), removed when the test ends.
mkdir -p "/etc/netns/$LAB_PREFIX-z"
# byname.example is Z's IPv6 address there: nginx then sees danted come over IPv6, which only
# a CONNECT by name can cause (Y dialed Z's IPv4 address).
printf '127.0.0.1 localhost\n%s byname.example\n' "$Z_ADDR6" >"/etc/netns/$LAB_PREFIX-z/hosts"
trap 'rm -rf "/etc/netns/$LAB_PREFIX-z"; e2e_cleanup' EXIT
bg ip netns exec "$LAB_PREFIX-z" danted -f "$TMP/danted.conf" -p "$TMP/danted.pid"
wait_listen in_z 1080 || die "danted did not start: $(cat "$TMP/danted.log" 2>/dev/null)"
# A server that speaks first (SMTP-like banner) on Z:2525.
bg ip netns exec "$LAB_PREFIX-z" socat "TCP-LISTEN:2525,bind=$Z_ADDR,fork,reuseaddr" \
    "SYSTEM:echo 220 banner.example ESMTP; sleep 1"
wait_listen in_z 2525 || die "banner server did not start"

tp_config up <<YAML
nftables: {table: tpengine_e2e_up}
upstreams:
  - name: socks
    type: socks5
    address: $Z_ADDR:1080
  - name: socks-by-name
    type: socks5
    address: $Z_ADDR:1080
    connect_by: domain
  - name: socks-down
    type: socks5
    address: $Z_ADDR:1081
  - name: block
    type: reject
listeners:
  - name: tp
    address: "::"
    port: 50080
    transparent: true
    timeouts: {sniff: 300ms, handshake: 2s}
    upstream: {to: original}
    routes:
      - ports: [8081]
        upstream: block
      - ports: [8082]
        upstream: socks-down
      - ports: [9999]
        upstream: socks
      - domains: [.proxied.example]
        upstream: socks
      - domains: [byname.example]
        upstream: socks-by-name
rules:
  - name: lab
    interfaces: [lan0]
    protocol: tcp
    destinations: [198.51.100.0/24]
    ports: [80, 2525, 8081, 8082, 9999]
    action: tproxy
    listener: tp
YAML
tp_pid=$TP_PID_up
fds0=$(in_x ls /proc/"$tp_pid"/fd | wc -l)

last_client() { tail -1 "$TMP/nginx/access.log" | cut -d' ' -f1; }
# By Host header: one name through danted, another direct; both at Z's one address.
curl_get() {  # NAME
    in_y curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
        --resolve "$1:80:$Z_ADDR" "http://$1/" 2>&1 || true
}
code=$(curl_get www.proxied.example)
[ "$code" = 200 ] && [ "$(last_client)" = "$Z_ADDR" ] &&
    ok "Host www.proxied.example went through danted (nginx saw $Z_ADDR)" ||
    fail "Host www.proxied.example: code $code, nginx saw $(last_client), want $Z_ADDR via danted"
code=$(curl_get direct.example)
[ "$code" = 200 ] && [ "$(last_client)" = "$X_WAN" ] &&
    ok "Host direct.example went direct (nginx saw $X_WAN)" ||
    fail "Host direct.example: code $code, nginx saw $(last_client), want $X_WAN"
code=$(curl_get byname.example)
[ "$code" = 200 ] && [ "$(last_client)" = "$Z_ADDR6" ] &&
    ok "Host byname.example: CONNECT by name, danted resolved it (nginx saw $Z_ADDR6)" ||
    fail "Host byname.example: code $code, nginx saw $(last_client), want $Z_ADDR6"

# A banner from a server that speaks first, through a listener that sniffs (the client sends
# nothing, so the route is decided when the sniff timeout ends).
banner=$(in_y timeout 5 socat -T 3 - "TCP:$Z_ADDR:2525" </dev/null 2>&1 | head -1 || true)
[[ "$banner" == "220 banner.example"* ]] && ok "server-first banner arrived: $banner" ||
    fail "server-first banner: got '$banner'"

# Failures: each gets a reset (curl sees the connection fail), counted by cause.
for port in 8081 8082 9999; do
    if in_y curl -sS -o /dev/null --max-time 5 "http://$Z_ADDR:$port/" 2>"$TMP/fail-$port.txt"; then
        fail "port $port: the connection succeeded"
    else
        ok "port $port: client failed: $(head -c 100 "$TMP/fail-$port.txt")"
    fi
done
sleep 0.5
fds1=$(in_x ls /proc/"$tp_pid"/fd | wc -l)
[ "$fds1" -le "$fds0" ] && ok "descriptors back at baseline ($fds0 -> $fds1)" ||
    fail "descriptors: $fds0 before, $fds1 after"
kill -USR1 "$tp_pid"
sleep 0.3
tp_stop up || fail "tpengine -c exited non-zero at stop"
stats=$(grep -E 'closed_by|handshake_failed_by' "$TMP/up.log" | head -2)
for want in "rejected=1" "connect_failed=1" "handshake_failed=1" "socks_not_allowed=1"; do
    grep -q "$want" <<<"$stats" && ok "counter $want" || fail "counter $want missing in: $stats"
done
