#!/usr/bin/env bash
# e2e 11, `--dry-run` + `--no-rules`, the path for firewalls that own the ruleset (OpenWrt fw4,
# firewalld): the operator applies the printed nft batch and ip commands, tpengine only relays.
# Same behaviour as set-up 5 (Z sees Y, Y sees Z), and tpengine never touches the rules: they are
# still there, unchanged, after it stops.
source "$(dirname "$0")/lib.sh"
e2e_init no_rules "$1" --spoof-route
z_services
cat >"$TMP/nr.yaml" <<YAML
nftables: {table: tpengine_e2e}
listeners:
  - {name: tp, address: "::", port: 50080, transparent: true, upstream: {to: original, source: client}}
rules:
  - {name: to-z, interfaces: [lan0], protocol: tcp, destinations: [198.51.100.0/24, "2001:db8:2::/64"], ports: [80, 8080, 5201, 9000], action: tproxy, listener: tp}
YAML
in_x "$TPENGINE" -c "$TMP/nr.yaml" --dry-run=nft >"$TMP/dry.nft" || die "--dry-run=nft failed"
in_x "$TPENGINE" -c "$TMP/nr.yaml" --dry-run=routes >"$TMP/dry.ip" || die "--dry-run=routes failed"
grep -q . "$TMP/dry.ip" || die "--dry-run=routes printed no ip commands"
in_x nft -f "$TMP/dry.nft" || die "nft rejected the --dry-run batch"
while read -r -a cmd; do in_x "${cmd[@]}" || die "failed: ${cmd[*]}"; done <"$TMP/dry.ip"
ok "applied --dry-run by hand: $(grep -c . "$TMP/dry.nft") nft lines, $(grep -c . "$TMP/dry.ip") ip commands"
applied=$(x_kernel_state; in_x nft list table inet tpengine_e2e | grep -v -e packets -e '^$')
tp_start nr -c "$TMP/nr.yaml" --no-rules
who no-rules-v4 "$Z_ADDR" 8080 "$Z_ADDR" "$Y_ADDR" yes
check_programs no-rules-v4 "$Z_ADDR" 80 5201 9000
who no-rules-v6 "$Z_ADDR6" 8080 "$Z_ADDR6" "$Y_ADDR6" yes
x_no_close_wait no-rules
tp_stop nr || fail "tpengine --no-rules exited non-zero at stop"
now=$(x_kernel_state; in_x nft list table inet tpengine_e2e | grep -v -e packets -e '^$')
[ "$now" = "$applied" ] && ok "--no-rules: the operator's rules are untouched after tpengine stopped" ||
    fail "--no-rules: tpengine changed the rules: $(diff <(echo "$applied") <(echo "$now"))"
show_table
