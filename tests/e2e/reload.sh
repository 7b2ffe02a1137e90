#!/usr/bin/env bash
# shellcheck disable=SC2154  # TP_PID_<name> is set by tp_start
# e2e 10, SIGHUP reload in the lab while a 32 MiB transfer runs through tpengine:
#   a valid file adds a port and a second listener: the transfer finishes intact, the new port is
#   caught at once; an invalid file is rejected, logged, and the running rules keep serving.
# `source: proxy`, so "relayed" is visible at Z (Z sees X, not Y).
source "$(dirname "$0")/lib.sh"
e2e_init reload "$1"
z_services
conf() {  # PORTS [EXTRA LISTENER YAML]
    cat <<YAML
nftables: {table: tpengine_e2e}
listeners:
  - {name: tp, address: "::", port: 50080, transparent: true, upstream: {to: original, source: proxy}}
${2:-}
rules:
  - {name: to-z, interfaces: [lan0], protocol: tcp, destinations: [198.51.100.0/24], ports: [$1], action: tproxy, listener: tp}
YAML
}
tp_config reload_a <<<"$(conf "8080, 9000")"
who before "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
# Port 80 is not in the rule yet: forwarded, unproxied (Z sees Y... but Z has no route back to
# Y's subnet, so it does not even answer): curl fails.
code=$(in_y curl -sS --max-time 3 -o /dev/null -w '%{http_code}' "http://$Z_ADDR/index.html" 2>/dev/null || true)
[ "$code" != 200 ] && ok "before reload: port 80 is not intercepted (curl: ${code:-none})" ||
    fail "before reload: port 80 answered 200 without a rule"

# A transfer in flight across both reloads: 32 MiB, paced (64 KiB every 5 ms) to span them.
head -c $((32 * 1048576)) /dev/urandom >"$TMP/big"
BIG_SHA=$(sha256sum <"$TMP/big" | cut -d' ' -f1)
ip netns exec "$LAB_PREFIX-z" timeout 90 socat -u "TCP4-LISTEN:9000,bind=$Z_ADDR,reuseaddr" "CREATE:$TMP/big.recv" &
sink=$!
BG_PIDS+=("$sink")
wait_listen in_z 9000 || die "sink did not start"
ip netns exec "$LAB_PREFIX-y" timeout 90 python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9000))
with open(sys.argv[2], "rb") as f:
    while b := f.read(65536):
        s.sendall(b)
        time.sleep(0.005)
s.shutdown(socket.SHUT_WR)
s.recv(1)
' "$Z_ADDR" "$TMP/big" &
sender=$!
BG_PIDS+=("$sender")
sleep 1

# Valid reload: port 80 added, plus a second listener.
conf "80, 8080, 9000" "  - {name: extra, address: \"::\", port: 50081, transparent: true, upstream: {to: original, source: proxy}}" \
    >"$TMP/reload_a.yaml"
n0=$(grep -c 'reloaded' "$TMP/reload_a.log" || true)
kill -HUP "$TP_PID_reload_a"
for _ in $(seq 50); do [ "$(grep -c 'reloaded' "$TMP/reload_a.log" || true)" -gt "$n0" ] && break; sleep 0.1; done
grep 'reloaded' "$TMP/reload_a.log" >/dev/null && ok "valid reload: $(grep 'reloaded' "$TMP/reload_a.log" | tail -1)" ||
    fail "valid reload not reported: $(tail -3 "$TMP/reload_a.log")"
wait_listen in_x 50081 && ok "valid reload: the new listener is up on 50081" || fail "no listener on 50081 after reload"
check_curl after-reload "http://$Z_ADDR/index.html"  # port 80 now intercepted and relayed

# Invalid reload: rejected, the running rules stay.
echo "rules: [ {name: broken, action: nonsense} ]" >"$TMP/reload_a.yaml"
kill -HUP "$TP_PID_reload_a"
for _ in $(seq 50); do grep 'reload rejected' "$TMP/reload_a.log" >/dev/null && break; sleep 0.1; done
grep 'reload rejected' "$TMP/reload_a.log" >/dev/null && ok "invalid reload rejected: $(grep -A1 'reload rejected' "$TMP/reload_a.log" | head -2 | tr '\n' ' ')" ||
    fail "invalid reload not rejected: $(tail -3 "$TMP/reload_a.log")"
who after-invalid "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes

kill -0 "$sender" 2>/dev/null && log "note: the transfer was still in flight after both reloads" ||
    log "note: the transfer finished before the second reload (slow machine?)"
# The transfer that was in flight across the reloads is intact.
wait "$sender" || fail "the transfer across the reloads failed (socat exit $?)"
wait "$sink" || true
[ "$(sha256sum <"$TMP/big.recv" | cut -d' ' -f1)" = "$BIG_SHA" ] &&
    ok "the 32 MiB transfer in flight across both reloads arrived intact" ||
    fail "the transfer across the reloads is corrupt or short ($(stat -c %s "$TMP/big.recv") bytes)"
x_no_close_wait reload
tp_stop reload_a || fail "tpengine -c exited non-zero at stop"
show_table
