# shellcheck shell=bash disable=SC2034  # the addresses are for the tests that source this
# Shared by the e2e tests (sourced): the lab with a cleanup trap, Z's real servers (nginx, the
# peer probe, iperf3, a socat sink), tpengine started inside X, and the who-knows-whom and
# payload assertions. Every test: `e2e_init NAME TPENGINE [lab.sh up options]` first.
# Set TP_E2E_STANDIN=socat to drive the relay set-ups with socat instead of `tpengine relay`
# (only to check the harness itself).
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
LAB=$REPO/tools/lab/lab.sh
PEER="python3 $REPO/tools/lab/peer.py"
Y_ADDR=192.0.2.2 X_LAN=192.0.2.1 X_WAN=198.51.100.1 Z_ADDR=198.51.100.2
Y_ADDR6=2001:db8:1::2 X_LAN6=2001:db8:1::1 X_WAN6=2001:db8:2::1 Z_ADDR6=2001:db8:2::2
# Z's services: nginx 80, peer probe 8080, iperf3 5201 and a socat sink 9000 (these two per check).
FAILS=0
TP_PIDS=()
BG_PIDS=()

log() { printf '%s\n' "$*" >&2; }
fail() { log "FAIL: $*"; FAILS=$((FAILS + 1)); }
die() { log "FAIL: $*"; exit 1; }
ok() { log "ok:   $*"; }
skip() { log "SKIP: $*"; exit 77; }

# Foreground only: a function run with & is a subshell, so $! would not be the program.
in_y() { ip netns exec "$LAB_PREFIX-y" "$@"; }
in_x() { ip netns exec "$LAB_PREFIX-x" "$@"; }
in_z() { ip netns exec "$LAB_PREFIX-z" "$@"; }

# Signal only processes still running inside this lab's namespaces: a PID remembered from
# earlier may have exited and been reused by an unrelated process since.
ours() { [[ "$(ip netns identify "$1" 2>/dev/null)" == "$LAB_PREFIX-"? ]]; }

# A test's own cleanup (files outside $TMP, say), run by e2e_cleanup after the exit status is
# read: a trap of the test's own around e2e_cleanup would hide that status and turn a die into PASS.
E2E_AT_EXIT=()
at_exit() { E2E_AT_EXIT+=("$1"); }

e2e_cleanup() {
    local rc=$? pid hook
    trap - EXIT INT TERM
    for hook in "${E2E_AT_EXIT[@]}"; do eval "$hook" || true; done
    for pid in "${TP_PIDS[@]}"; do  # SIGTERM first: tpengine removes its rules on a clean stop
        ours "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${TP_PIDS[@]}"; do
        for _ in $(seq 50); do ours "$pid" || break; sleep 0.1; done
        ours "$pid" && kill -9 "$pid" 2>/dev/null || true
    done
    disown_all
    for pid in "${BG_PIDS[@]}"; do ours "$pid" && kill -9 "$pid" 2>/dev/null || true; done
    "$LAB" down >/dev/null 2>&1 || true
    if [ -n "${KEEP_TMP:-}" ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    if [ "$rc" -eq 0 ] && [ "$FAILS" -gt 0 ]; then rc=1; fi
    case $rc in
    0) log "PASS: $E2E_NAME ($SECONDS s)" ;;
    77) ;;
    *) log "FAIL: $E2E_NAME (exit $rc, $FAILS failed checks)" ;;
    esac
    exit "$rc"
}

e2e_init() {  # NAME TPENGINE [lab.sh up options]
    E2E_NAME=$1
    TPENGINE=$2
    shift 2
    [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
    local c
    for c in ip nft ss python3 curl iperf3 socat nginx conntrack sha256sum timeout; do
        command -v "$c" >/dev/null || skip "needs $c"
    done
    [ -x "$TPENGINE" ] || die "no tpengine binary at '$TPENGINE'"
    ip netns add "e2echk$$" 2>/dev/null || skip "cannot create network namespaces here"
    ip netns del "e2echk$$"
    "$LAB" sweep || true  # labs of earlier runs killed before their trap could run
    export LAB_PREFIX=e2e$$
    TMP=$(mktemp -d "/tmp/tpe2e-$E2E_NAME.XXXXXX")
    chmod 755 "$TMP"
    trap e2e_cleanup EXIT
    trap 'exit 130' INT TERM
    "$LAB" up "$@" >/dev/null
    log "== $E2E_NAME: lab $LAB_PREFIX up ($*)"
}

wait_listen() {  # NS-FN PORT [TRIES]: until something listens on PORT in that namespace
    local fn=$1 port=$2 tries=${3:-50}
    for _ in $(seq "$tries"); do
        "$fn" ss -Htln "sport = :$port" | grep LISTEN >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

bg() {  # run in background, remembered for cleanup
    "$@" &
    BG_PIDS+=($!)
}
# Killed background helpers must not print "Killed" job notices at the end.
disown_all() { disown -a 2>/dev/null || true; }

# --- Z's servers ------------------------------------------------------------------------------
z_services() {
    mkdir -p "$TMP/www" "$TMP/nginx"
    head -c 262144 /dev/urandom | base64 >"$TMP/www/index.html"
    PAGE_SHA=$(sha256sum <"$TMP/www/index.html" | cut -d' ' -f1)
    cat >"$TMP/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 256; }
http {
    log_format who '\$remote_addr \$remote_port \$server_addr \$server_port "\$request" \$status';
    access_log $TMP/nginx/access.log who;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen $Z_ADDR:80;
        listen [$Z_ADDR6]:80;
        root $TMP/www;
    }
}
EOF
    bg ip netns exec "$LAB_PREFIX-z" nginx -c "$TMP/nginx/nginx.conf" -g 'daemon off;'
    bg ip netns exec "$LAB_PREFIX-z" $PEER server --log "$TMP/peer.log" "$Z_ADDR:8080" "[$Z_ADDR6]:8080" >/dev/null
    wait_listen in_z 80 && wait_listen in_z 8080 ||
        die "Z's servers did not start: $(cat "$TMP/nginx/error.log" 2>/dev/null)"
}

# --- tpengine inside X --------------------------------------------------------------------------
tp_start() {  # NAME ARGS...: tpengine ARGS in X, log $TMP/NAME.log; waits for its ready line
    local name=$1
    shift
    ip netns exec "$LAB_PREFIX-x" "$TPENGINE" "$@" >"$TMP/$name.log" 2>&1 &
    local pid=$!
    TP_PIDS+=("$pid")
    eval "TP_PID_$name=$pid"
    for _ in $(seq 100); do
        if grep -qE 'relay listening on|running \(' "$TMP/$name.log"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            # The front ends are placeholders until their helpers land them: skip, do not fail.
            grep -q 'not built yet' "$TMP/$name.log" && skip "tpengine $1: not built yet"
            die "tpengine $* exited at start: $(cat "$TMP/$name.log")"
        fi
        sleep 0.1
    done
    die "tpengine $* not ready after 10 s: $(cat "$TMP/$name.log")"
}

tp_stop() {  # NAME: SIGTERM, wait for exit; returns its exit code
    local pid
    eval "pid=\$TP_PID_$1"
    ours "$pid" && kill -TERM "$pid" 2>/dev/null || true
    local rc=0 t0=$SECONDS
    if ! timeout 30 tail --pid="$pid" -f /dev/null; then
        log "tpengine $1 still running 30 s after SIGTERM: kill -9"
        ours "$pid" && kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" -eq 0 ] || log "tpengine $1 exited $rc, $((SECONDS - t0)) s after SIGTERM; its log ends: $(tail -3 "$TMP/$1.log")"
    return $rc
}

# tcprdr-style relay in X: tp_relay NAME [FLAGS...] LOCALPORT HOST REMOTEPORT
tp_relay() {
    local name=$1
    shift
    if [ "${TP_E2E_STANDIN:-}" != socat ]; then
        tp_start "$name" relay -v "$@"
        return
    fi
    local t=0 T=0
    while [ $# -gt 3 ]; do
        case $1 in -t) t=1 ;; -T) T=1 ;; esac
        shift
    done
    local lopt="TCP-LISTEN:$1,fork,reuseaddr" up="TCP:$2:$3"
    [ $t = 1 ] && lopt="$lopt,ip-transparent"
    if [ $T = 1 ]; then
        up="SYSTEM:exec socat - 'TCP:$2:$3,ip-transparent,bind=\$SOCAT_PEERADDR:\$SOCAT_PEERPORT'"
    fi
    bg ip netns exec "$LAB_PREFIX-x" socat "$lopt" "$up"
    eval "TP_PID_$name=${BG_PIDS[-1]}"
    wait_listen in_x "$1" || die "socat stand-in did not listen on $1"
}

# --- who knows whom -----------------------------------------------------------------------------
norm() { sed -E 's/\[::ffff:([0-9.]+)\]/\1/g'; }
field() { sed -n "s/^$1=//p" "$2" | head -1; }
ip_of() { sed -E 's/^\[?(.*[^]])\]?:[0-9]+$/\1/; s/\]$//' <<<"$1"; }

# who LABEL HOST PORT Y_SEES Z_SEES RELAYED: Y connects to HOST:PORT with the peer probe.
#   Y_SEES: the IP Y's getpeername must show. Z_SEES: the IP Z's server must have accepted
#   (or "client-port": Y's own address AND port). RELAYED: yes|no|yes:X_LOCAL, X's sockets
#   (ss -tn) must / must not hold both legs of this connection.
who() {
    local label=$1 host=$2 port=$3 y_sees=$4 z_sees=$5 relayed=$6 out=$TMP/who-$1.txt
    # WHO_FROM=x runs the client on X itself (capture_local).
    if ! ip netns exec "$LAB_PREFIX-${WHO_FROM:-y}" $PEER client --during "ip netns exec $LAB_PREFIX-x ss -tnH" "$host" "$port" >"$out" 2>&1; then
        fail "$label: probe to $host:$port failed: $(cat "$out")"
        return
    fi
    local cl cp sp sl
    cl=$(field client_local "$out")
    cp=$(field client_peer "$out")
    sp=$(field server_peer "$out")
    sl=$(field server_local "$out")
    local ok_=1
    [ "$(ip_of "$cp")" = "$y_sees" ] || { fail "$label: Y's peer is $cp, expected $y_sees"; ok_=0; }
    if [ "$z_sees" = client-port ]; then
        [ "$sp" = "$cl" ] || { fail "$label: Z accepted $sp, expected Y's own $cl"; ok_=0; }
    else
        [ "$(ip_of "$sp")" = "$z_sees" ] || { fail "$label: Z accepted $sp, expected $z_sees"; ok_=0; }
    fi
    # Z's own record (what the server wrote down when it accepted) agrees with its report.
    grep -qF "\"server_peer\": \"$sp\"" "$TMP/peer.log" || { fail "$label: $sp not in Z's log"; ok_=0; }
    local ss_x legs=0 x_local=$cp
    # yes:ADDR:PORT = relayed, but X's client-side socket is ADDR:PORT (REDIRECT rewrote Y's
    # destination to X's own address; conntrack shows Y the original one).
    [[ "$relayed" == yes:* ]] && x_local=${relayed#yes:}
    ss_x=$(sed -n '/^during:/,$p' "$out" | norm | awk '{print $4" "$5}')
    grep -qxF "$x_local $cl" <<<"$ss_x" && legs=$((legs + 1))
    grep -qxF "$sp $sl" <<<"$ss_x" && legs=$((legs + 1))
    if [[ "$relayed" == yes* ]] && [ $legs -ne 2 ]; then
        fail "$label: X's ss -tn does not hold both legs ($x_local<-$cl, $sp->$sl): $ss_x"
        ok_=0
    elif [ "$relayed" = no ] && [ $legs -ne 0 ]; then
        fail "$label: X holds sockets of a connection it should only forward: $ss_x"
        ok_=0
    fi
    printf "%-22s %s %-24s -> sees %-24s Z sees %-24s X sockets: %s\n" "$label" "$(tr yx YX <<<"${WHO_FROM:-y}")" "$cl" "$cp" "$sp" \
        "$([ $legs -eq 2 ] && echo "both legs" || echo "none")" >>"$TMP/table.txt"
    LAST_Z_SEES=$(ip_of "$sp")  # check_curl holds nginx's log to the same view
    [ $ok_ = 1 ] && ok "$label: Y sees $cp, Z sees $sp, X relays=$relayed"
    return 0
}

# --- real programs through the method -----------------------------------------------------------
check_curl() {  # LABEL URL
    local code n0
    n0=$(cat "$TMP/nginx/access.log" 2>/dev/null | wc -l)
    code=$(in_y curl -sS -g --max-time 15 -o "$TMP/curl.out" -w '%{http_code}' "$2" 2>&1) || true
    if [ "$code" != 200 ]; then
        fail "$1: curl $2 -> $code"
    elif [ "$(sha256sum <"$TMP/curl.out" | cut -d' ' -f1)" != "$PAGE_SHA" ]; then
        fail "$1: curl $2 body differs from the page on Z"
    else
        ok "$1: curl $2 -> 200, body sha256 intact"
    fi
    # nginx's own view of its client ($remote_addr) agrees with the probe's (who, just before).
    if [ -n "${LAST_Z_SEES:-}" ]; then
        local seen=""
        for _ in $(seq 20); do
            seen=$(sed -n "$((n0 + 1))p" "$TMP/nginx/access.log" 2>/dev/null | cut -d' ' -f1)
            [ -n "$seen" ] && break
            sleep 0.1
        done
        [ "$seen" = "$LAST_Z_SEES" ] && ok "$1: nginx's \$remote_addr is $seen" ||
            fail "$1: nginx's \$remote_addr is '$seen', expected $LAST_Z_SEES"
    fi
}

check_iperf() {  # LABEL HOST PORT
    # iperf3 -t stops counting at the deadline while bytes are still buffered on the way, so
    # "sent" and "received" differ even without a proxy. What must match: the server's own
    # count (its JSON) and the client's report of it, and at most the buffered bytes missing.
    local j=$TMP/iperf-$1.json s=$TMP/iperf-$1.server.json
    ip netns exec "$LAB_PREFIX-z" timeout 40 iperf3 -s -1 -J -p 5201 >"$s" 2>&1 &
    local srv=$!
    BG_PIDS+=("$srv")
    wait_listen in_z 5201 || die "$1: iperf3 server did not start"
    if ! in_y timeout 40 iperf3 -c "$2" -p "$3" -t 2 -J >"$j" 2>&1; then
        fail "$1: iperf3 -c $2 -p $3 failed: $(head -c 400 "$j")"
        return
    fi
    wait "$srv" || true
    local r
    r=$(python3 - "$j" "$s" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["end"]
s = json.load(open(sys.argv[2]))["end"]
sent, recv, srv = c["sum_sent"]["bytes"], c["sum_received"]["bytes"], s["sum_received"]["bytes"]
ok = 0 < recv <= sent and recv == srv and sent - recv < 64 << 20
print(f"{int(ok)} {sent} {recv} {srv} {c['sum_received']['bits_per_second'] / 1e9:.2f}")
PY
) || r="0 ? ? ? ?"
    read -r good sent recv srv gbps <<<"$r"
    if [ "$good" = 1 ]; then
        ok "$1: iperf3 $2:$3 client sent $sent, server received $srv (client's report $recv), $gbps Gbit/s"
        echo "$1 iperf3 $gbps Gbit/s" >>"$TMP/figures.txt"
    else
        fail "$1: iperf3 counts: client sent $sent, client's report $recv, server's own $srv"
    fi
}

BIG_MB=${TP_E2E_BIG_MB:-100}
check_socat() {  # LABEL HOST PORT [6]: BIG_MB MiB random file Y -> HOST:PORT -> Z's sink on 9000
    local label=$1 host=$2 port=$3 fam=${4:-4}
    [ -f "$TMP/big" ] || head -c $((BIG_MB * 1048576)) /dev/urandom >"$TMP/big"
    [ -n "${BIG_SHA:-}" ] || BIG_SHA=$(sha256sum <"$TMP/big" | cut -d' ' -f1)
    rm -f "$TMP/big.recv"
    local listen="TCP4-LISTEN:9000,bind=$Z_ADDR,reuseaddr" target="TCP4:$host:$port"
    if [ "$fam" = 6 ]; then
        listen="TCP6-LISTEN:9000,bind=[$Z_ADDR6],reuseaddr"
        target="TCP6:[$host]:$port"
    fi
    ip netns exec "$LAB_PREFIX-z" timeout 60 socat -u "$listen" "CREATE:$TMP/big.recv" &
    local sink=$!
    BG_PIDS+=("$sink")
    wait_listen in_z 9000 || die "$label: socat sink did not start"
    local t0=$SECONDS
    if ! in_y timeout 60 socat -u "OPEN:$TMP/big" "$target"; then
        fail "$label: socat send to $host:$port failed"
    fi
    wait "$sink" || true
    local got
    got=$(sha256sum <"$TMP/big.recv" 2>/dev/null | cut -d' ' -f1)
    if [ "$got" = "$BIG_SHA" ]; then
        ok "$label: socat ${BIG_MB} MiB to $host:$port, sha256 matches at both ends ($((SECONDS - t0)) s)"
    else
        fail "$label: socat ${BIG_MB} MiB: sha256 differs (got $(stat -c %s "$TMP/big.recv" 2>/dev/null) bytes)"
    fi
}

# All three programs against one entry point. PORTS: "nginx peer iperf socat" as Y dials them.
check_programs() {  # LABEL HOST HTTP_PORT IPERF_PORT SOCAT_PORT [6]
    local h=$2
    [ "${6:-4}" = 6 ] && h="[$2]"
    check_curl "$1" "http://$h:$3/index.html"
    check_iperf "$1" "$2" "$4"
    check_socat "$1" "$2" "$5" "${6:-4}"
}

# nft + policy routing inside X (the lab's own rules for the relay set-ups, not tpengine -c).
x_policy_routing() {  # the local-delivery table for marked packets, both families
    in_x ip -4 rule add fwmark 0x1/0x1 lookup 100
    in_x ip -4 route add local 0.0.0.0/0 dev lo table 100
    in_x ip -6 rule add fwmark 0x1/0x1 lookup 100
    in_x ip -6 route add local ::/0 dev lo table 100
}

show_table() {
    log "-- who knows whom ($E2E_NAME)"
    cat "$TMP/table.txt" >&2 2>/dev/null || true
}

# x_nft_lab MAP: the lab's own TPROXY rule set inside X (divert + one tproxy rule per port, v4 and
# v6), exactly what the kernel doc gives for tcprdr. MAP: "DPORT:LISTENPORT ...", or "" for the
# divert chain alone (the -T set-up: replies from Z to Y's address go to X's transparent socket).
x_nft_lab() {
    local rules="" m
    for m in $1; do
        rules+="        iifname \"lan0\" meta nfproto ipv4 tcp dport ${m%%:*} tproxy ip to :${m##*:} meta mark set 0x1 accept"$'\n'
        rules+="        iifname \"lan0\" meta nfproto ipv6 tcp dport ${m%%:*} tproxy ip6 to :${m##*:} meta mark set 0x1 accept"$'\n'
    done
    {
        echo "table inet lab {"
        echo "    chain divert {"
        echo "        type filter hook prerouting priority mangle; policy accept;"
        echo "        meta l4proto tcp socket transparent 1 meta mark set 0x1 accept"
        echo "    }"
        echo "    chain pre {"
        echo "        type filter hook prerouting priority mangle + 1; policy accept;"
        printf '%s' "$rules"
        echo "    }"
        echo "}"
    } >"$TMP/lab.nft"
    in_x nft -f "$TMP/lab.nft" || die "nft rejected the lab's rules: $(cat "$TMP/lab.nft")"
    x_policy_routing
}

# After the traffic: no socket in X is left in CLOSE-WAIT (a peer closed and the relay never
# closed its side: a leaked connection). Bounded wait for the state, no timing asserted.
x_no_close_wait() {  # LABEL
    local left=""
    for _ in $(seq 30); do
        left=$(in_x ss -Htan state close-wait)
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] && ok "$1: no socket left in CLOSE-WAIT on X" ||
        fail "$1: sockets left in CLOSE-WAIT on X: $left"
}

# The four fixed relays of the tcprdr tests: Y-side port -> Z's service port.
RELAY_MAP="80:50080 8080:50081 5201:55201 9000:59000"
relays() {  # FLAGS...: one `tpengine relay FLAGS LPORT Z PORT` per service
    local m
    for m in $RELAY_MAP; do
        tp_relay "r${m##*:}" "$@" "${m##*:}" "$Z_ADDR" "${m%%:*}"
    done
}
stop_relays() {  # each relay must stop cleanly (exit 0) on SIGTERM
    local m
    [ "${TP_E2E_STANDIN:-}" = socat ] && return 0
    for m in $RELAY_MAP; do
        tp_stop "r${m##*:}" && ok "relay r${m##*:} stopped cleanly on SIGTERM" ||
            fail "relay r${m##*:} did not stop cleanly on SIGTERM"
    done
}

# tpengine -c inside X. The YAML comes on stdin; written to $TMP/NAME.yaml.
tp_config() {  # NAME [EXTRA ARGS...] <yaml
    local name=$1
    shift
    cat >"$TMP/$name.yaml"
    if ! in_x "$TPENGINE" -c "$TMP/$name.yaml" --check >"$TMP/$name.check" 2>&1; then
        # The front end is a placeholder until its helper lands it: skip, do not fail.
        grep -q 'not built yet' "$TMP/$name.check" && skip "tpengine -c not built yet"
        die "tpengine -c --check rejected $name.yaml: $(cat "$TMP/$name.check")"
    fi
    tp_start "$name" -c "$TMP/$name.yaml" "$@"
}

# What tpengine leaves in X: its nft tables, ip rules and route tables (both families).
x_kernel_state() {
    in_x nft list tables
    in_x ip -4 rule show
    in_x ip -6 rule show
    in_x ip -4 route show table all | grep -v -e 'table local' -e '^broadcast' || true
    in_x ip -6 route show table all | grep -v -e 'table local' -e '^fe80' -e '^multicast' || true
}

# The seed's claim, checked: the socket set-ups neither forward nor track. x_no_forwarding turns
# X's forwarding off (the relay still works); x_conntrack_entries counts X's conntrack entries.
x_no_forwarding() {
    in_x sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
}
x_conntrack_entries() {  # prints the count, or "unknown" when conntrack -L fails
    local out
    out=$(in_x conntrack -L 2>/dev/null) || { echo unknown; return; }
    grep -c . <<<"$out" || true
}

# N concurrent connections at once through the method, each echoed back byte for byte by Z.
check_many() {  # LABEL HOST PORT N   (Z's echo server listens on 7000)
    if ! wait_listen in_z 7000 1; then
        bg ip netns exec "$LAB_PREFIX-z" $PEER echo "$Z_ADDR:7000" >/dev/null
        wait_listen in_z 7000 || die "echo server did not start"
    fi
    local out
    out=$(in_y timeout 60 $PEER many "$4" "$2" "$3" 2>&1) && ok "$1: $4 concurrent connections echoed byte for byte ($out)" ||
        fail "$1: $4 concurrent connections: $out"
}
