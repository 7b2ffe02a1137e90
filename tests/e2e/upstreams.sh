#!/usr/bin/env bash
# e2e, issue 10: routes and upstreams through `tpengine -c` with real servers on Z: danted
# (SOCKS5, open and with RFC 1929 username/password, each also pipelined), tinyproxy (HTTP
# CONNECT, with and without Basic credentials), nginx and HAProxy expecting PROXY v1/v2 headers. Y's connections to Z are TPROXY'd in X and routed by sniffed name (Host, SNI)
# or port: through danted (by address and by name), through tinyproxy, direct with a PROXY
# header, a reject route, a SOCKS server that is down, a destination danted refuses, and the
# default direct, a wrong SOCKS password, a SOCKS server that closes mid-handshake. nginx's logs on Z prove which way each went (the proxies connect from Z's own
# address, X directly from X_WAN; $proxy_protocol_addr is Y). A server that speaks first gets its
# banner through a sniffing listener. HAProxy on X sends PROXY v2 to tpengine, which either
# passes the client on in its own header or connects from it (source: client). Counters say why each failure closed, and X's tpengine
# holds no more descriptors afterwards.
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
at_exit 'rm -rf "/etc/netns/$LAB_PREFIX-z"'
# byname.example is Z's IPv6 address there: nginx then sees danted come over IPv6, which only
# a CONNECT by name can cause (Y dialed Z's IPv4 address).
printf '127.0.0.1 localhost\n%s byname.example\n' "$Z_ADDR6" >"/etc/netns/$LAB_PREFIX-z/hosts"
# danted's username method checks the system's password files: a test user in Z's view of them
# only (the same bind mounts; the shadow file holds that one user).
{ cat /etc/passwd; echo "tpsocks:x:64999:65534::/nonexistent:/usr/sbin/nologin"; } \
    >"/etc/netns/$LAB_PREFIX-z/passwd"
install -m 600 /dev/null "/etc/netns/$LAB_PREFIX-z/shadow"
echo "tpsocks:$(openssl passwd -6 tppass):20000:0:99999:7:::" >"/etc/netns/$LAB_PREFIX-z/shadow"
bg ip netns exec "$LAB_PREFIX-z" danted -f "$TMP/danted.conf" -p "$TMP/danted.pid"
wait_listen in_z 1080 || die "danted did not start: $(cat "$TMP/danted.log" 2>/dev/null)"
# A second danted on 1082 that wants a username and password (RFC 1929).
sed -e "s/port = 1080/port = 1082/" -e "s/^socksmethod: none/socksmethod: username/" \
    -e "s|danted.log|danted-auth.log|" "$TMP/danted.conf" >"$TMP/danted-auth.conf"
bg ip netns exec "$LAB_PREFIX-z" danted -f "$TMP/danted-auth.conf" -p "$TMP/danted-auth.pid"
wait_listen in_z 1082 || die "danted (auth) did not start: $(cat "$TMP/danted-auth.log" 2>/dev/null)"
echo tppass >"$TMP/socks.pass"
# A "SOCKS server" that takes the greeting, answers half of the method reply and closes.
printf 'head -c 3 >/dev/null\nprintf "\\005"\n' >"$TMP/half-socks.sh"
bg ip netns exec "$LAB_PREFIX-z" socat "TCP-LISTEN:1083,bind=$Z_ADDR,fork,reuseaddr" \
    "SYSTEM:sh $TMP/half-socks.sh"
wait_listen in_z 1083 || die "the half SOCKS server did not start"
echo wrongpass >"$TMP/socks-bad.pass"
# A server that speaks first (SMTP-like banner) on Z:2525.
bg ip netns exec "$LAB_PREFIX-z" socat "TCP-LISTEN:2525,bind=$Z_ADDR,fork,reuseaddr" \
    "SYSTEM:echo 220 banner.example ESMTP; sleep 1"
wait_listen in_z 2525 || die "banner server did not start"
# tinyproxy (HTTP CONNECT) on Z: 3128 open, 3129 with Basic credentials.
for port in 3128 3129; do
    {
        echo "User nobody"
        echo "Group nogroup"
        echo "Port $port"
        echo "Listen $Z_ADDR"
        echo "Timeout 10"
        echo "LogFile \"$TMP/tinyproxy-$port.log\""
        echo "LogLevel Info"
        echo "PidFile \"$TMP/tinyproxy-$port.pid\""
        echo "MaxClients 20"
        echo "Allow 0.0.0.0/0"
        echo "ConnectPort 80"
        [ "$port" = 3129 ] && echo "BasicAuth tpuser tppass"
    } >"$TMP/tinyproxy-$port.conf"
    install -m 666 /dev/null "$TMP/tinyproxy-$port.log"  # it writes as nobody
    bg ip netns exec "$LAB_PREFIX-z" tinyproxy -d -c "$TMP/tinyproxy-$port.conf"
    wait_listen in_z "$port" || die "tinyproxy $port did not start"
done
echo "tpuser:tppass" >"$TMP/http.cred"
# nginx on Z expecting PROXY headers (v1 and v2 both accepted), logging the address they carry;
# the same instance serves HTTPS on 443 (a throw-away self-signed certificate) for SNI routing.
mkdir -p "$TMP/nginx-pp"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=tls.example -days 1 \
    -keyout "$TMP/nginx-pp/key.pem" -out "$TMP/nginx-pp/cert.pem" >/dev/null 2>&1 ||
    die "openssl could not make a test certificate"
cat >"$TMP/nginx-pp/nginx.conf" <<EOF2
user root;
worker_processes 1;
pid $TMP/nginx-pp/nginx.pid;
error_log $TMP/nginx-pp/error.log;
events { worker_connections 64; }
http {
    log_format pp '\$proxy_protocol_addr \$remote_addr "\$request" \$status';
    access_log $TMP/nginx-pp/access.log pp;
    client_body_temp_path $TMP/nginx-pp/body;
    proxy_temp_path $TMP/nginx-pp/proxy;
    fastcgi_temp_path $TMP/nginx-pp/fastcgi;
    uwsgi_temp_path $TMP/nginx-pp/uwsgi;
    scgi_temp_path $TMP/nginx-pp/scgi;
    server {
        listen $Z_ADDR:8443 proxy_protocol;
        listen $Z_ADDR:8444 proxy_protocol;
        root $TMP/www;
    }
    server {
        listen $Z_ADDR:443 ssl;
        ssl_certificate $TMP/nginx-pp/cert.pem;
        ssl_certificate_key $TMP/nginx-pp/key.pem;
        root $TMP/www;
    }
}
EOF2
bg ip netns exec "$LAB_PREFIX-z" nginx -c "$TMP/nginx-pp/nginx.conf" -g 'daemon off;'
wait_listen in_z 8443 || die "nginx (proxy_protocol) did not start: $(cat "$TMP/nginx-pp/error.log")"
# HAProxy on Z expecting PROXY headers (v2 on 8445, v1 on 8446): it answers with the source
# address the header carried and the v2 AUTHORITY TLV (the sniffed name), or "-".
cat >"$TMP/haproxy-z.cfg" <<EOF2
global
    pidfile $TMP/haproxy-z.pid
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend pp
    bind $Z_ADDR:8445 accept-proxy
    bind $Z_ADDR:8446 accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src] %[fc_pp_authority]"
EOF2
bg ip netns exec "$LAB_PREFIX-z" haproxy -db -f "$TMP/haproxy-z.cfg"
wait_listen in_z 8446 || die "haproxy on Z did not start"

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
  - name: socks-auth
    type: socks5
    address: $Z_ADDR:1082
    username: tpsocks
    password_file: $TMP/socks.pass
  - name: socks-auth-pipe
    type: socks5
    address: $Z_ADDR:1082
    username: tpsocks
    password_file: $TMP/socks.pass
    pipeline: true
  - name: socks-pipe
    type: socks5
    address: $Z_ADDR:1080
    pipeline: true
  - name: socks-badpw
    type: socks5
    address: $Z_ADDR:1082
    username: tpsocks
    password_file: $TMP/socks-bad.pass
  - name: socks-half
    type: socks5
    address: $Z_ADDR:1083
  - name: socks-down
    type: socks5
    address: $Z_ADDR:1081
  - name: block
    type: reject
  - name: http
    type: http
    address: $Z_ADDR:3128
  - name: http-nocred
    type: http
    address: $Z_ADDR:3129
  - name: http-cred
    type: http
    address: $Z_ADDR:3129
    credentials_file: $TMP/http.cred
  - name: pp-v2
    proxy_protocol: v2
  - name: pp-v1
    proxy_protocol: v1
  - name: pp-z8444
    to: $Z_ADDR:8444
    proxy_protocol: v1
listeners:
  # Behind HAProxy (send-proxy-v2) on X: the header's client becomes ours and is passed on.
  - name: pin
    address: 127.0.0.1
    port: 50090
    transparent: false
    accept_proxy: v2
    accept_proxy_from: [127.0.0.0/8]
    upstream: {to: original}
    routes:
      - upstream: pp-z8444
  # The same, connecting to Z from the header's client itself (Z routes Y back via X).
  - name: pin-client
    address: 127.0.0.1
    port: 50091
    transparent: false
    accept_proxy: v2
    accept_proxy_from: [127.0.0.0/8]
    upstream: {to: "$Z_ADDR:80", source: client}
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
      - domains: [auth.socks.example]
        upstream: socks-auth
      - domains: [authpipe.socks.example]
        upstream: socks-auth-pipe
      - domains: [pipe.socks.example]
        upstream: socks-pipe
      - domains: [badpw.socks.example]
        upstream: socks-badpw
      - domains: [half.socks.example]
        upstream: socks-half
      - ports: [8443]
        upstream: pp-v2
      - ports: [8444]
        upstream: pp-v1
      - ports: [8445]
        upstream: pp-v2
      - ports: [8446]
        upstream: pp-v1
      - domains: [connect.example]
        upstream: http
      - domains: [noauth.example]
        upstream: http-nocred
      - domains: [auth.example]
        upstream: http-cred
rules:
  - name: lab
    interfaces: [lan0]
    protocol: tcp
    destinations: [198.51.100.0/24]
    ports: [80, 443, 2525, 8081, 8082, 8443, 8444, 8445, 8446, 9999]
    action: tproxy
    listener: tp
YAML
tp_pid=$TP_PID_up
cat >"$TMP/haproxy.cfg" <<EOF2
global
    pidfile $TMP/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend f
    bind $X_LAN:7000
    default_backend b
backend b
    server t 127.0.0.1:50090 send-proxy-v2
frontend f2
    bind $X_LAN:7001
    default_backend b2
backend b2
    server t 127.0.0.1:50091 send-proxy-v2
EOF2
bg ip netns exec "$LAB_PREFIX-x" haproxy -db -f "$TMP/haproxy.cfg"
wait_listen in_x 7001 || die "haproxy did not start"
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

# A request whose Host line comes in a second segment, 50 ms after the first: the first bytes
# cannot decide, so they are held until the name is in; the request still arrives whole.
split_host() {
    in_y timeout 5 python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=3)
s.sendall(b"GET / HTTP/1.1\r\nHo")
time.sleep(0.05)
s.sendall(b"st: www.proxied.example\r\nConnection: close\r\n\r\n")
print(s.makefile("rb").readline().decode().strip())' "$Z_ADDR" 2>&1 || true
}
status=$(split_host)
[[ "$status" == "HTTP/1.1 200"* ]] && [ "$(last_client)" = "$Z_ADDR" ] &&
    ok "Host split over two segments went through danted (nginx saw $Z_ADDR)" ||
    fail "Host split over two segments: '$status', nginx saw $(last_client), want $Z_ADDR via danted"

# RFC 1929 username/password, and pipelining (greeting, credentials and request in one write),
# against danted: the second danted logs the user it admitted.
for name in auth.socks.example authpipe.socks.example pipe.socks.example; do
    code=$(curl_get "$name")
    [ "$code" = 200 ] && [ "$(last_client)" = "$Z_ADDR" ] &&
        ok "Host $name went through danted (nginx saw $Z_ADDR)" ||
        fail "Host $name: code $code, nginx saw $(last_client), want $Z_ADDR via danted"
done
n=$(grep -c 'username%tpsocks@' "$TMP/danted-auth.log" 2>/dev/null || true)
[ "${n:-0}" -ge 2 ] && ok "danted admitted user tpsocks ($n log lines)" ||
    fail "danted's log shows no session of user tpsocks: $(tail -3 "$TMP/danted-auth.log")"

# By TLS server name (SNI), two names on Z's one address: one through danted, one direct.
tls_get() {  # NAME: the address nginx logged for it
    in_y curl -sSk -o /dev/null --max-time 5 --resolve "$1:443:$Z_ADDR" "https://$1/" >/dev/null 2>&1 || true
    tail -1 "$TMP/nginx-pp/access.log" 2>/dev/null | cut -d' ' -f2
}
seen=$(tls_get www.proxied.example)
[ "$seen" = "$Z_ADDR" ] && ok "SNI www.proxied.example went through danted (nginx saw $seen)" ||
    fail "SNI www.proxied.example: nginx saw '$seen', want $Z_ADDR via danted"
seen=$(tls_get tls.example)
[ "$seen" = "$X_WAN" ] && ok "SNI tls.example went direct (nginx saw $seen)" ||
    fail "SNI tls.example: nginx saw '$seen', want $X_WAN"

# HTTP CONNECT through tinyproxy: open, with credentials, and a 407 without them.
code=$(curl_get connect.example)
[ "$code" = 200 ] && [ "$(last_client)" = "$Z_ADDR" ] &&
    ok "Host connect.example through tinyproxy (HTTP CONNECT)" ||
    fail "Host connect.example: code $code, nginx saw $(last_client), want $Z_ADDR"
code=$(curl_get auth.example)
[ "$code" = 200 ] && [ "$(last_client)" = "$Z_ADDR" ] &&
    ok "Host auth.example through tinyproxy with Basic credentials" ||
    fail "Host auth.example: code $code, nginx saw $(last_client)"
code=$(curl_get noauth.example)
[ "$code" != 200 ] && ok "Host noauth.example: no credentials, the client is reset ($code)" ||
    fail "Host noauth.example went through without credentials"

# PROXY protocol v2 and v1 to nginx: the address it logs is Y's, although X connected.
for port in 8443 8444; do
    code=$(in_y curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://$Z_ADDR:$port/" 2>&1 || true)
    line=$(tail -1 "$TMP/nginx-pp/access.log" 2>/dev/null || true)
    [ "$code" = 200 ] && [ "${line%% *}" = "$Y_ADDR" ] && [ "$(cut -d' ' -f2 <<<"$line")" = "$X_WAN" ] &&
        ok "PROXY header on $port: nginx's \$proxy_protocol_addr is Y ($line)" ||
        fail "PROXY header on $port: code $code, nginx logged '$line', want $Y_ADDR from $X_WAN"
done

# HAProxy as the receiver (accept-proxy): the source it takes from our v2 and v1 headers is Y's;
# v2 carries the sniffed name in its AUTHORITY TLV.
body=$(in_y curl -sS --max-time 5 -H 'Host: authority.example' "http://$Z_ADDR:8445/" 2>&1 || true)
[ "$body" = "$Y_ADDR authority.example" ] &&
    ok "PROXY v2 to HAProxy: source Y, AUTHORITY authority.example ($body)" ||
    fail "PROXY v2 to HAProxy: answered '$body', want '$Y_ADDR authority.example'"
body=$(in_y curl -sS --max-time 5 "http://$Z_ADDR:8446/" 2>&1 || true)
[ "${body%% *}" = "$Y_ADDR" ] && ok "PROXY v1 to HAProxy: source Y ($body)" ||
    fail "PROXY v1 to HAProxy: answered '$body', want $Y_ADDR first"

# accept_proxy: Y -> HAProxy on X (send-proxy-v2) -> tpengine 127.0.0.1:50090 -> PROXY v1 -> nginx
# on Z, which logs Y: the address HAProxy's header carried became tpengine's client.
code=$(in_y curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://$X_LAN:7000/" 2>&1 || true)
line=$(tail -1 "$TMP/nginx-pp/access.log" 2>/dev/null || true)
[ "$code" = 200 ] && [ "${line%% *}" = "$Y_ADDR" ] &&
    ok "accept_proxy: HAProxy's v2 header made Y the client, passed on to Z ($line)" ||
    fail "accept_proxy: code $code, nginx logged '$line', want $Y_ADDR"
# accept_proxy + source: client: Y -> HAProxy on X (send-proxy-v2) -> tpengine 127.0.0.1:50091,
# which connects to Z:80 from Y's address: nginx on Z sees Y itself, no header involved.
"$LAB" route-back on >/dev/null
code=$(in_y curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://$X_LAN:7001/" 2>&1 || true)
[ "$code" = 200 ] && [ "$(last_client)" = "$Y_ADDR" ] &&
    ok "accept_proxy + source: client: nginx on Z saw Y ($Y_ADDR) as the peer" ||
    fail "accept_proxy + source: client: code $code, nginx saw $(last_client), want $Y_ADDR"
# A trusted source that sends no header: reset, counted.
if in_x curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:50090/" 2>/dev/null; then
    fail "accept_proxy: a connection without a PROXY header went through"
else
    ok "accept_proxy: a connection without a PROXY header is reset"
fi

# A banner from a server that speaks first, through a listener that sniffs (the client sends
# nothing, so the route is decided when the sniff timeout ends).
banner=$(in_y timeout 5 socat -T 3 - "TCP:$Z_ADDR:2525" </dev/null 2>&1 | head -1 || true)
[[ "$banner" == "220 banner.example"* ]] && ok "server-first banner arrived: $banner" ||
    fail "server-first banner: got '$banner'"

# Failures: each gets a reset (curl sees the connection fail), counted by cause.
for what in badpw:"wrong SOCKS password" half:"SOCKS server closed mid-handshake"; do
    name=${what%%:*}
    if in_y curl -sS -o /dev/null --max-time 5 --resolve "$name.socks.example:80:$Z_ADDR" \
        "http://$name.socks.example/" 2>"$TMP/fail-$name.txt"; then
        fail "${what#*:}: the connection succeeded"
    elif grep -qi reset "$TMP/fail-$name.txt"; then
        ok "${what#*:}: client reset ($(head -c 100 "$TMP/fail-$name.txt"))"
    else
        fail "${what#*:}: client failed without a reset: $(cat "$TMP/fail-$name.txt")"
    fi
done
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
for want in "rejected=1" "connect_failed=1" "handshake_failed=4" "socks_not_allowed=1" "socks_auth_refused=1" " closed=1" "http_407=1" "bad_proxy_header=1"; do
    grep -q "$want" <<<"$stats" && ok "counter $want" || fail "counter $want missing in: $stats"
done
