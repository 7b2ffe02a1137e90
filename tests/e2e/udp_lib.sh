# shellcheck shell=bash
# UDP helpers for the e2e tests (sourced after lib.sh): Z's UDP who-am-I server and the UDP
# who-knows-whom check (issue 9). Z's UDP server answers on 7101-7104 (v4 and v6) and 443.
Y_ADDR_B=192.0.2.3 Y_ADDR6_B=2001:db8:1::3  # Y's second address (a client no rule intercepts)
UDP_PORTS="7101 7102 7103 7104 443"

z_udp_services() {  # Z: peer.py userver on every UDP port, both families
    local binds="" p
    for p in $UDP_PORTS; do binds+=" $Z_ADDR:$p [$Z_ADDR6]:$p"; done
    # shellcheck disable=SC2086
    bg ip netns exec "$LAB_PREFIX-z" $PEER userver --log "$TMP/upeer.log" $binds >/dev/null
    for _ in $(seq 50); do
        in_z ss -Huln "sport = :7104" | grep -q . && return 0
        sleep 0.1
    done
    die "Z's UDP server did not start"
}

y_second_address() {  # a second client address on Y, for a client the rules leave alone
    in_y ip addr add "$Y_ADDR_B/24" dev eth0
    in_y ip -6 addr add "$Y_ADDR6_B/64" dev eth0 nodad
}

# uwho LABEL HOST PORT Z_SEES [BIND] [PORT2]: Y sends one datagram from one socket (bound to
# BIND, default Y's address of HOST's family) to HOST:PORT, then to HOST:PORT2 if given.
#   Checks: the answer came from HOST:PORT itself (Y believes it talks to HOST), and Z saw Z_SEES
#   (an IP, or "client-port": Y's own address AND port). With PORT2: Z saw the same source
#   address and port for both (one upstream mapping: endpoint-independent).
uwho() {
    local label=$1 host=$2 port=$3 z_sees=$4 bind=${5:-} port2=${6:-} out=$TMP/uwho-$1.txt
    if [ -z "$bind" ]; then
        bind=$Y_ADDR
        [[ "$host" == *:* ]] && bind=$Y_ADDR6
    fi
    local between=()
    [ -n "${UWHO_BETWEEN:-}" ] && between=(--between "$UWHO_BETWEEN")
    # shellcheck disable=SC2086
    if ! in_y $PEER uclient --timeout 4 --bind "$bind" "${between[@]}" "$host" "$port" $port2 >"$out" 2>&1; then
        fail "$label: no answer from $host:$port: $(tr '\n' ' ' <"$out")"
        return
    fi
    local cl rf sp want_from ok_=1
    cl=$(field client_local "$out")
    rf=$(field reply_from1 "$out")
    sp=$(field server_peer1 "$out")
    want_from="$host:$port"
    [[ "$host" == *:* ]] && want_from="[$host]:$port"
    [ "$rf" = "$want_from" ] || { fail "$label: the answer came from $rf, expected $want_from"; ok_=0; }
    if [ "$z_sees" = client-port ]; then
        [ "$sp" = "$cl" ] || { fail "$label: Z saw $sp, expected Y's own $cl"; ok_=0; }
    else
        [ "$(ip_of "$sp")" = "$z_sees" ] || { fail "$label: Z saw $sp, expected $z_sees"; ok_=0; }
    fi
    grep -qF "\"server_peer\": \"$sp\"" "$TMP/upeer.log" || { fail "$label: $sp not in Z's log"; ok_=0; }
    if [ -n "$port2" ]; then
        local rf2 sp2
        rf2=$(field reply_from2 "$out")
        sp2=$(field server_peer2 "$out")
        [ "$rf2" = "${want_from%:*}:$port2" ] || { fail "$label: 2nd answer came from $rf2"; ok_=0; }
        [ "$sp2" = "$sp" ] || { fail "$label: Z saw $sp then $sp2: not one mapping"; ok_=0; }
    fi
    printf "%-22s Y %-26s -> answer from %-24s Z sees %s%s\n" "$label" "$cl" "$rf" "$sp" \
        "${port2:+ (and from the same for :$port2)}" >>"$TMP/table.txt"
    [ $ok_ = 1 ] && ok "$label: Y's answer from $rf, Z sees $sp${port2:+, same mapping for :$port2}"
    return 0
}

# x_nft_lab_udp MAP: the lab's own UDP TPROXY rules inside X for the relay set-ups: a UDP divert
# (`tpengine relay -u -T` upstream sockets bound to Y's address receive Z's answers through it)
# and one tproxy rule per port, v4 and v6. MAP: "DPORT:LISTENPORT ...".
x_nft_lab_udp() {
    local rules="" m
    for m in $1; do
        rules+="        iifname \"lan0\" meta nfproto ipv4 udp dport ${m%%:*} tproxy ip to :${m##*:} meta mark set 0x1 accept"$'\n'
        rules+="        iifname \"lan0\" meta nfproto ipv6 udp dport ${m%%:*} tproxy ip6 to :${m##*:} meta mark set 0x1 accept"$'\n'
    done
    {
        echo "table inet labudp {"
        echo "    chain divert {"
        echo "        type filter hook prerouting priority mangle; policy accept;"
        echo "        meta l4proto udp socket transparent 1 meta mark set 0x1 accept"
        echo "    }"
        echo "    chain pre {"
        echo "        type filter hook prerouting priority mangle + 1; policy accept;"
        printf '%s' "$rules"
        echo "    }"
        echo "}"
    } >"$TMP/labudp.nft"
    in_x nft -f "$TMP/labudp.nft" || die "nft rejected the lab's UDP rules: $(cat "$TMP/labudp.nft")"
    x_policy_routing
}
