#!/usr/bin/env bash
# The demo: the three-host lab (lab.sh), tpengine in X with an embedded configuration (TPROXY, the
# original destination, the client's address preserved), requests from Y, and a table of who saw
# whom. Everything happens inside the lab's namespaces; the host's firewall and routes are only
# read (before and after, to show they did not change).
#   usage: demo.sh TPENGINE_BINARY
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LAB=$here/lab.sh
PEER="python3 $here/peer.py"
TPENGINE=${1:-}

die() { echo "demo: $*" >&2; exit 1; }
[ -n "$TPENGINE" ] || { echo "usage: demo.sh TPENGINE_BINARY" >&2; exit 2; }
TPENGINE=$(readlink -f "$TPENGINE") || true
[ -x "$TPENGINE" ] || die "no tpengine binary at '$1' (build it first: tools/run.sh build)"
[ "$(id -u)" -eq 0 ] || die "needs root (it creates network namespaces)"
for c in ip nft ss python3 curl nginx; do
    command -v "$c" >/dev/null || die "needs '$c' (tools/install-deps.sh installs it)"
done

"$LAB" sweep || true  # labs of earlier demos or tests killed before they could clean up
export LAB_PREFIX=demo$$
TMP=$(mktemp -d /tmp/tpengine-demo.XXXXXX)
chmod 755 "$TMP"
tp_pid=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Only while it still runs inside X (the PID of an exited process may have been reused).
    if [ -n "$tp_pid" ] && [ "$(ip netns identify "$tp_pid" 2>/dev/null)" = "$LAB_PREFIX-x" ]; then
        kill -TERM "$tp_pid" 2>/dev/null || true
        timeout 15 tail --pid="$tp_pid" -f /dev/null || kill -9 "$tp_pid" 2>/dev/null || true
    fi
    disown -a 2>/dev/null || true  # lab.sh down kills Z's servers: no "Killed" notices
    "$LAB" down >/dev/null 2>&1 || true
    rm -rf "$TMP"
    [ "$rc" -eq 0 ] || echo "demo: FAILED (exit $rc); the lab has been removed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_y() { ip netns exec "$LAB_PREFIX-y" "$@"; }
in_x() { ip netns exec "$LAB_PREFIX-x" "$@"; }
in_z() { ip netns exec "$LAB_PREFIX-z" "$@"; }
host_state() { nft list ruleset 2>/dev/null; ip -4 rule; ip -6 rule; ip -4 route; ip -6 route; }
x_state() { in_x nft list ruleset; in_x ip -4 rule; in_x ip -6 rule; in_x ip -4 route show table all; in_x ip -6 route show table all; }
wait_listen() {  # FN PORT
    for _ in $(seq 50); do
        "$1" ss -Htln "sport = :$2" | grep LISTEN >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

host_before=$(host_state | sha256sum)

echo "1. the lab: client Y 192.0.2.2 -- X (router, tpengine) -- server Z 198.51.100.2 (prefix $LAB_PREFIX)"
"$LAB" up --spoof-route >/dev/null

echo "2. on Z: nginx on :80 and a probe server on :8080 (it records the peer it accepts)"
mkdir -p "$TMP/www"
echo "hello from Z, the server" >"$TMP/www/index.html"
cat >"$TMP/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 64; }
http {
    log_format who '\$remote_addr:\$remote_port';
    access_log $TMP/access.log who;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    server { listen 198.51.100.2:80; listen [2001:db8:2::2]:80; root $TMP/www; }
}
EOF
ip netns exec "$LAB_PREFIX-z" nginx -c "$TMP/nginx.conf" -g 'daemon off;' &
ip netns exec "$LAB_PREFIX-z" $PEER server --log "$TMP/peer.log" 198.51.100.2:8080 '[2001:db8:2::2]:8080' >/dev/null &
wait_listen in_z 80 && wait_listen in_z 8080 || die "Z's servers did not start"

echo "3. on X: tpengine -c with the default configuration (TPROXY, to: original, source: client)"
cat >"$TMP/demo.yaml" <<'EOF'
# Intercept Y's TCP connections to Z's subnet (ports 80 and 8080, IPv4 and IPv6) on lan0 and
# relay each to its original destination from the client's own address.
nftables: {table: tpengine_demo, fail: open}
listeners:
  - name: transparent
    address: "::"
    port: 50080
    transparent: true
    upstream: {to: original, source: client}
    max_connections: 4096      # a lab's worth (the default 65536 wants ~131k descriptors)
rules:
  - name: lan-to-servers
    interfaces: [lan0]
    protocol: tcp
    destinations: [198.51.100.0/24, "2001:db8:2::/64"]
    ports: [80, 8080]
    action: tproxy
    listener: transparent
EOF
x_before=$(x_state)
ip netns exec "$LAB_PREFIX-x" "$TPENGINE" -c "$TMP/demo.yaml" >"$TMP/tpengine.log" 2>&1 &
tp_pid=$!
for _ in $(seq 100); do
    grep -q 'running (' "$TMP/tpengine.log" && break
    kill -0 "$tp_pid" 2>/dev/null || die "tpengine exited at start: $(cat "$TMP/tpengine.log")"
    sleep 0.1
done
grep -q 'running (' "$TMP/tpengine.log" || die "tpengine not ready after 10 s: $(cat "$TMP/tpengine.log")"
sed 's/^/   | /' "$TMP/tpengine.log"

echo "4. from Y: curl http://198.51.100.2/ and http://[2001:db8:2::2]/, the probe to :8080 on both"
rows=()
x_sockets() { awk 'NR>1 || !/^State/ {print $4"<->"$5}' | sed -E 's/\[::ffff:([0-9.]+)\]/\1/g' | tr '\n' ' '; }
for url in http://198.51.100.2/ 'http://[2001:db8:2::2]/'; do
    out=$(in_y curl -sS -g --max-time 10 -w '\n%{http_code} %{local_ip}:%{local_port} %{remote_ip}:%{remote_port}' "$url") ||
        die "curl $url failed"
    read -r code y_local y_peer <<<"$(tail -1 <<<"$out")"
    [ "$code" = 200 ] || die "curl $url: HTTP $code"
    [ "$(head -1 <<<"$out")" = "hello from Z, the server" ] || die "curl $url: unexpected body"
    sleep 0.2  # nginx writes its access log line after the response
    z_saw=$(tail -1 "$TMP/access.log")
    rows+=("curl $url|$y_local|$y_peer|$z_saw (nginx log)|(closed by then)")
done
for dst in 198.51.100.2 2001:db8:2::2; do
    in_y $PEER client --during "ip netns exec $LAB_PREFIX-x ss -tnH" "$dst" 8080 >"$TMP/probe.txt" ||
        die "probe to $dst:8080 failed: $(cat "$TMP/probe.txt")"
    f() { sed -n "s/^$1=//p" "$TMP/probe.txt"; }
    rows+=("probe $dst:8080|$(f client_local)|$(f client_peer)|$(f server_peer)|$(sed -n '/^during:/,$p' "$TMP/probe.txt" | tail -n +2 | x_sockets)")
done

echo
printf '%-32s %-24s %-24s %-34s %s\n' "Y's request" "Y's address" "Y's view of its peer" "Z's view of its client" "X's sockets (local<->peer)"
for r in "${rows[@]}"; do
    IFS='|' read -r a b c d e <<<"$r"
    printf '%-32s %-24s %-24s %-34s %s\n' "$a" "$b" "$c" "$d" "$e"
done
echo
# The point of the set-up, checked: Y saw Z's address, Z saw Y's address.
ip_of() { local a=${1% (*}; a=${a%:*}; a=${a#[}; echo "${a%]}"; }
for r in "${rows[@]}"; do
    IFS='|' read -r a b c d e <<<"$r"
    case "$(ip_of "$c")" in 198.51.100.2 | 2001:db8:2::2) ;; *) die "$a: Y's peer is $c, not Z" ;; esac
    [ "$(ip_of "$b")" = "$(ip_of "$d")" ] || die "$a: Z saw $d, not Y's address $b"
    # ...and it went through tpengine: X holds the client-side leg (local = Z's address).
    [[ "$a" != probe* || " $e" == *" $c<->$b "* ]] || die "$a: not relayed by X (X's sockets: $e)"
done
echo "   Y talked to Z's own address and Z saw Y's own address; only X's sockets show the relay."

echo "5. stopping tpengine (SIGTERM): it removes its table, ip rules and routes"
kill -TERM "$tp_pid"
rc=0
wait "$tp_pid" || rc=$?
tp_pid=
[ "$rc" -eq 0 ] || die "tpengine exited $rc at stop: $(tail -5 "$TMP/tpengine.log")"
[ "$(x_state)" = "$x_before" ] || die "tpengine left state in X: $(diff <(echo "$x_before") <(x_state))"
echo "   X's ruleset, rules and routes are as before tpengine started."

disown -a
"$LAB" down
[ "$(host_state | sha256sum)" = "$host_before" ] || die "the host's firewall or routes changed!"
echo "6. lab removed; the host's own nftables ruleset, ip rules and routes are unchanged. demo: OK"
