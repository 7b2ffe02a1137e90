#!/usr/bin/env bash
# e2e, issue 10: UDP through SOCKS5 UDP ASSOCIATE with the real danted on Z. Y's datagrams to Z
# are TPROXY'd in X and routed per flow by port: through danted without authentication, through
# a second danted with username/password (RFC 1929), to a reject upstream, or direct. Z's UDP
# who-am-I server sees danted's address (Z's own) for the proxied flows (IPv4 and IPv6
# destinations, through one IPv4 SOCKS server) and X for the direct one; Y's answers come from
# Z's address and port every time; danted's logs show each association. A SOCKS server that is
# down and one that never answers fail the association (counted by cause). Then the authenticating danted goes away: its association's control connection
# closes and the flow ends (counted); idle flows expire, their control connections close, and
# X's tpengine holds no more descriptors than before.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/udp_lib.sh"
command -v danted >/dev/null || skip "needs danted (dante-server)"
command -v openssl >/dev/null || skip "needs openssl (a password hash for danted's user)"
e2e_init udp_socks "$1"
z_udp_services
x_no_forwarding

# danted checks usernames against the system's password database: Z's namespace gets its own
# passwd and shadow (ip netns exec bind-mounts /etc/netns/NS/*), removed when the test ends.
mkdir -p "/etc/netns/$LAB_PREFIX-z"
at_exit 'rm -rf "/etc/netns/$LAB_PREFIX-z"'
hash=$(openssl passwd -6 tppass)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\ntpuser:x:4242:65534:tp:/nonexistent:/usr/sbin/nologin\n' \
    >"/etc/netns/$LAB_PREFIX-z/passwd"
printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\ntpuser:%s:19000:0:99999:7:::\n' "$hash" \
    >"/etc/netns/$LAB_PREFIX-z/shadow"
chmod 600 "/etc/netns/$LAB_PREFIX-z/shadow"
printf 'tppass\n' >"$TMP/socks.pass"

danted_conf() {  # PORT METHOD
    cat <<EOF2
logoutput: $TMP/danted-$1.log
internal: $Z_ADDR port = $1
external: $Z_ADDR
external: $Z_ADDR6
clientmethod: none
socksmethod: $2
user.privileged: root
user.unprivileged: nobody
client pass { from: 0/0 to: 0/0 }
socks pass { from: 0/0 to: 0/0 log: connect disconnect }
EOF2
}
danted_conf 1080 none >"$TMP/danted-1080.conf"
danted_conf 1081 username >"$TMP/danted-1081.conf"
bg ip netns exec "$LAB_PREFIX-z" danted -f "$TMP/danted-1080.conf" -p "$TMP/danted-1080.pid"
bg ip netns exec "$LAB_PREFIX-z" danted -f "$TMP/danted-1081.conf" -p "$TMP/danted-1081.pid"
wait_listen in_z 1080 || die "danted 1080 did not start: $(cat "$TMP/danted-1080.log" 2>/dev/null)"
wait_listen in_z 1081 || die "danted 1081 did not start: $(cat "$TMP/danted-1081.log" 2>/dev/null)"
# A "SOCKS server" that accepts and never answers (handshake timeout); nothing listens on 1082.
bg ip netns exec "$LAB_PREFIX-z" socat "TCP-LISTEN:1083,bind=$Z_ADDR,fork,reuseaddr" SYSTEM:"sleep 4"
wait_listen in_z 1083 || die "the silent server did not start"

tp_config us <<YAML
nftables: {table: tpengine_e2e_us}
upstreams:
  - {name: socks, type: socks5, address: "$Z_ADDR:1080", udp: true}
  - {name: socks-auth, type: socks5, address: "$Z_ADDR:1081", udp: true, username: tpuser, password_file: "$TMP/socks.pass"}
  - {name: drop, type: reject}
  - {name: socks-down, type: socks5, address: "$Z_ADDR:1082", udp: true}
  - {name: socks-mute, type: socks5, address: "$Z_ADDR:1083", udp: true}
listeners:
  - name: u
    port: 50070
    protocol: udp
    udp: {idle: 2s}
    timeouts: {handshake: 1s}
    upstream: {to: original}
    routes:
      - {ports: [7101], upstream: socks}
      - {ports: [7102], upstream: socks-auth}
      - {ports: [7103], upstream: drop}
      - {ports: [7105], upstream: socks-down}
      - {ports: [7106], upstream: socks-mute}
rules:
  - {name: lab, interfaces: [lan0], ports: [7101-7106], destinations: [198.51.100.0/24, "2001:db8:2::/64"], action: tproxy, listener: u}
YAML
tp_pid=$TP_PID_us
fds0=$(in_x ls /proc/"$tp_pid"/fd | wc -l)

# No answer through a reject route, a SOCKS server that is down or one that never answers
# (the three at once: each waits out its 2 s). First, while no other flow lives: a client port
# the kernel hands out again joins the live flow of that port, whose route is already chosen.
waits=()
for port in 7103 7105 7106; do
    in_y $PEER uclient --timeout 2 --bind "$Y_ADDR" "$Z_ADDR" "$port" >"$TMP/noanswer-$port.txt" 2>&1 &
    waits+=($!)
done
for pid in "${waits[@]}"; do wait "$pid" || true; done
for port in 7103 7105 7106; do
    grep -q '^reply_from1=' "$TMP/noanswer-$port.txt" && fail "port $port: Y got an answer" ||
        ok "port $port: Y's datagram got no answer"
done
# uwho: Y's answer must come from Z:PORT itself, and Z must have seen the given source.
uwho via-danted "$Z_ADDR" 7101 "$Z_ADDR"
uwho via-danted-v6 "$Z_ADDR6" 7101 "$Z_ADDR6"
uwho via-danted-auth "$Z_ADDR" 7102 "$Z_ADDR"
uwho direct "$Z_ADDR" 7104 "$X_WAN"
grep -qi 'udpassociate' "$TMP/danted-1080.log" &&
    ok "danted (no auth) logged the association: $(grep -i -m1 udpassociate "$TMP/danted-1080.log" | cut -c1-120)" ||
    fail "danted 1080 log shows no udpassociate: $(tail -3 "$TMP/danted-1080.log")"
grep -qi 'udpassociate' "$TMP/danted-1081.log" && grep -q 'tpuser' "$TMP/danted-1081.log" &&
    ok "danted (username) logged tpuser's association" ||
    fail "danted 1081 log shows no udpassociate by tpuser: $(tail -3 "$TMP/danted-1081.log")"

# A flow through the authenticating danted, then danted goes away: the control connection
# closes and the flow ends (socks_closed), well before its idle timeout.
# (danted's mother process exits on SIGTERM but leaves running sessions to its children, which
# rename themselves: stop the mother and every process holding a connection on :1081, by id.)
uwho via-danted-auth-2 "$Z_ADDR" 7102 "$Z_ADDR"
pids=$(in_z ss -Htnp state established "sport = :1081" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
[ -n "$pids" ] || fail "no danted process holds an association on :1081"
for pid in $(cat "$TMP/danted-1081.pid") $pids; do kill "$pid" 2>/dev/null || true; done
sleep 0.5
totals() {  # the last `total:` block of the statistics tpengine printed
    awk '/^total:/ {b = ""} /^total:/, /^worker 0:/ {b = b $0 "\n"} END {printf "%s", b}' "$TMP/us.log"
}
kill -USR1 "$tp_pid"
sleep 0.3
grep -q 'socks_closed=[1-9]' <<<"$(totals)" && ok "danted gone: its association's flow ended (socks_closed)" ||
    fail "no socks_closed flow end after danted stopped: $(totals | grep udp_ended)"
# The other flows expire after 2 s idle; their control connections close with them. What stays
# is the reply socket cache (one socket per Z port answered from, closed least recently used).
sleep 3.5
kill -USR1 "$tp_pid"
sleep 0.3
fds1=$(in_x ls /proc/"$tp_pid"/fd | wc -l)
replies=$(totals | sed -n 's/.* reply_sockets=\([0-9]*\).*/\1/p' | head -1)
[ "$fds1" -le $((fds0 + ${replies:-0})) ] &&
    ok "descriptors back at baseline ($fds0 -> $fds1, of which $replies cached reply sockets)" ||
    fail "descriptors: $fds0 before, $fds1 after ($replies reply sockets): $(in_x ls -l /proc/"$tp_pid"/fd | tail -5)"
grep -q 'flows_active=0' <<<"$(totals)" && ok "no flow left" || fail "flows left: $(totals | grep 'udp:')"
stats=$(totals)
tp_stop us || fail "tpengine -c exited non-zero at stop"
for want in "udp_socks: flows=6 connect_failed=1 handshake_timeout=1" "rejected=1" "socks_malformed=0" \
    "socks_fragment=0" "socks_queue=0" "dgrams_up=5 dgrams_down=5" "socks_failed=2"; do
    grep -q "$want" <<<"$stats" && ok "counter $want" || fail "counter $want missing in: $stats"
done
