#!/usr/bin/env bash
# e2e 8, kill -9 under load, and what `fail:` does to Y's next connection. The listener uses
# `source: proxy`, so a relayed connection shows X at Z and an unproxied one shows Y.
#   fail: open   -> rules stay, no socket takes the packets, nft_tproxy falls through: Y's next
#                   connection goes straight to Z, unproxied (Z sees Y).
#   fail: closed -> the rule set drops them: Y's next connection times out.
# Then `tpengine -c FILE --cleanup` (open) and a plain restart (closed) remove what was left.
source "$(dirname "$0")/lib.sh"
e2e_init fail_policy "$1" --spoof-route
z_services
before=$(x_kernel_state)
config() {  # FAIL-MODE
    cat <<YAML
nftables: {table: tpengine_e2e, fail: $1}
listeners:
  - name: tp
    address: "::"
    port: 50080
    transparent: true
    upstream: {to: original, source: proxy}
rules:
  - {name: lab, interfaces: [lan0], protocol: tcp, destinations: [198.51.100.0/24], ports: [8080, 9000], action: tproxy, listener: tp}
YAML
}
kill9_under_load() {  # NAME: a stream Y -> Z:9000 through tpengine, then kill -9 tpengine
    ip netns exec "$LAB_PREFIX-z" timeout 30 socat -u "TCP4-LISTEN:9000,bind=$Z_ADDR,reuseaddr" /dev/null &
    BG_PIDS+=($!)
    wait_listen in_z 9000 || die "sink did not start"
    ip netns exec "$LAB_PREFIX-y" timeout 30 socat -u /dev/zero "TCP4:$Z_ADDR:9000" 2>/dev/null &
    local load=$!
    BG_PIDS+=("$load")
    sleep 1
    local pid
    eval "pid=\$TP_PID_$1"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    # The stream through the dead relay must end (reset), not hang until its timeout.
    local rc=0
    wait "$load" || rc=$?
    [ "$rc" -ne 124 ] && ok "$1: the stream through the killed tpengine ended (socat exit $rc)" ||
        fail "$1: the stream through the killed tpengine hung"
    in_x nft list tables | grep tpengine_e2e >/dev/null && ok "$1: after kill -9 the rules are still there (as expected)" ||
        log "note: no table after kill -9"
}

# --- fail: open
tp_config open <<<"$(config open)"
who open-proxied "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
kill9_under_load open
who open-after-kill "$Z_ADDR" 8080 "$Z_ADDR" "$Y_ADDR" no
in_x "$TPENGINE" -c "$TMP/open.yaml" --cleanup >"$TMP/cleanup.log" 2>&1 || fail "--cleanup failed: $(cat "$TMP/cleanup.log")"
[ "$(x_kernel_state)" = "$before" ] && ok "open: --cleanup removed everything tpengine left" ||
    fail "open: --cleanup left state: $(diff <(echo "$before") <(x_kernel_state))"

# --- fail: closed
tp_config closed <<<"$(config closed)"
who closed-proxied "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
kill9_under_load closed
if in_y $PEER client --timeout 3 "$Z_ADDR" 8080 >"$TMP/closed-after-kill.txt" 2>&1; then
    fail "closed: Y's connection after kill -9 got through: $(cat "$TMP/closed-after-kill.txt")"
else
    ok "closed: Y's connection after kill -9 is dropped ($(field error "$TMP/closed-after-kill.txt"))"
    echo "closed-after-kill      Y -> $Z_ADDR:8080: $(field error "$TMP/closed-after-kill.txt")" >>"$TMP/table.txt"
fi
# The next start sweeps the killed instance's state: exactly one table, rule and route of ours.
tp_config closed2 <<<"$(config closed)"
[ "$(in_x nft list tables | grep -c tpengine_e2e)" = 1 ] || fail "closed: restart: not exactly one table"
# As many ip rules as --dry-run announces (this rule set is IPv4-only: one v4 rule, no v6 rule).
for fam in 4 6; do
    want=$(in_x "$TPENGINE" -c "$TMP/closed2.yaml" --dry-run | grep -c "^ip -$fam rule add" || true)
    have=$(in_x ip -$fam rule show | grep -c 'lookup 100' || true)
    [ "$have" = "$want" ] && ok "closed: restart: $have IPv$fam ip rule(s) of ours, as --dry-run says" ||
        fail "closed: restart: $have IPv$fam ip rules of ours, --dry-run says $want"
done
grep -q 'removed what an earlier instance left' "$TMP/closed2.log" &&
    ok "closed: restart: $(grep 'removed what an earlier instance left' "$TMP/closed2.log")" ||
    log "note: the restart did not report a sweep"
who closed-restarted "$Z_ADDR" 8080 "$Z_ADDR" "$X_WAN" yes
tp_stop closed2 || fail "tpengine -c exited non-zero at stop"
[ "$(x_kernel_state)" = "$before" ] && ok "closed: after restart and stop nothing is left" ||
    fail "closed: state left: $(diff <(echo "$before") <(x_kernel_state))"
show_table
