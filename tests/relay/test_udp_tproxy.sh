#!/bin/bash
# relay -u -t and -t -T through a real TPROXY rule, IPv4 and IPv6, in three network namespaces
# C (client) - X (relay, forwarding off, so only the relay can answer) - Z (server), documentation
# addresses only. Checks, per mode and family:
#  - C's reply comes FROM the address and port C sent to (Z's), through the relay's reply socket;
#  - Z saw the source the mode promises (proxy: X's own address; -T: C's address and port);
#  - one C socket talking to two of Z's ports keeps one upstream mapping (endpoint-independent);
#  - a flow to port 53 ends once its query is answered (dns_answered);
#  - a datagram that fills the 1,500-byte MTU passes; a larger one (it reached X fragmented and
#    was reassembled) is not fragmented again: IP_PMTUDISC_DO, dropped, counted emsgsize;
#  - a burst of 31 replies (30 of one size, a shorter last one) that reaches the relay while it is
#    stopped (read in one pass, so sent in UDP_SEGMENT batches through the reply socket) arrives
#    whole, unmerged and from Z's address and port;
#  - a local service on X holding [::]:53 without SO_REUSEADDR (the dnsmasq case) does not break
#    DNS through the relay: the reply socket cannot be bound, the cause is logged once, and the
#    answers go out through the raw fallback, still from Z's address and port 53.
# For -T, Z's replies reach the relay's upstream socket through a UDP `socket transparent` divert
# placed AFTER the tproxy rule (before it, client datagrams would be diverted into the unread reply
# sockets). Needs root (exit 77 otherwise). Usage: test_udp_tproxy.sh PATH/TO/tpengine
set -u
TPE=${1:?usage: test_udp_tproxy.sh TPENGINE}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v nft >/dev/null || { echo "SKIP: no nft"; exit 77; }
P=tpu$$
C=$P-c X=$P-x Z=$P-z
WORK=$(mktemp -d /tmp/udp-tproxy.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for n in $C $X $Z; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.err; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

for n in $C $X $Z; do ip netns add "$n" || fail "netns add"; ip -n "$n" link set lo up; done
ip link add ${P}a netns $C type veth peer name ${P}b netns $X
ip link add ${P}c netns $X type veth peer name ${P}d netns $Z
ip -n $C addr add 192.0.2.2/24 dev ${P}a
ip -n $C addr add 2001:db8:1::2/64 dev ${P}a nodad
ip -n $X addr add 192.0.2.1/24 dev ${P}b
ip -n $X addr add 2001:db8:1::1/64 dev ${P}b nodad
ip -n $X addr add 198.51.100.1/24 dev ${P}c
ip -n $X addr add 2001:db8:2::1/64 dev ${P}c nodad
ip -n $Z addr add 198.51.100.7/24 dev ${P}d
ip -n $Z addr add 2001:db8:2::7/64 dev ${P}d nodad
for l in "$C ${P}a" "$X ${P}b" "$X ${P}c" "$Z ${P}d"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n $C route add default via 192.0.2.1
ip -n $C -6 route add default via 2001:db8:1::1
ip -n $Z route add default via 198.51.100.1
ip -n $Z -6 route add default via 2001:db8:2::1
ip netns exec $X sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
ip -n $X rule add fwmark 0x1 lookup 100
ip -n $X route add local 0.0.0.0/0 dev lo table 100
ip -n $X -6 rule add fwmark 0x1 lookup 100
ip -n $X -6 route add local ::/0 dev lo table 100
ip netns exec $X nft -f - <<NFT || fail "nft"
table inet t {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    meta mark 0x99 return
    iifname "${P}b" meta nfproto ipv4 udp dport { 53, 9998, 9999 } tproxy ip to :15353 meta mark set 0x1 accept
    iifname "${P}b" meta nfproto ipv6 udp dport { 53, 9998, 9999 } tproxy ip6 to :15353 meta mark set 0x1 accept
    meta l4proto udp socket transparent 1 meta mark set 0x1 accept
  }
}
NFT

# Z: on ports 9998 and 9999 (v4 and v6), answers "PAYLOAD|SRC_IP|SRC_PORT"; "burst" is answered,
# half a second later, by 30 datagrams of 1,003 bytes and one of 5.
ip netns exec $Z python3 -c '
import selectors, socket, time
sel = selectors.DefaultSelector()
for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for port in (53, 9998, 9999):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port)); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for k, _ in sel.select():
        d, a = k.fileobj.recvfrom(70000)
        if d == b"burst":
            time.sleep(0.5)
            for i in range(30):
                k.fileobj.sendto(b"r%02d" % i + b"x" * 1000, a)
            k.fileobj.sendto(b"last!", a)
            continue
        k.fileobj.sendto(d + b"|" + a[0].encode() + b"|" + str(a[1]).encode(), a)
' >"$WORK/z.out" 2>"$WORK/z.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$WORK/z.out" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$WORK/z.out" || fail "server in Z did not start"

run_mode() {  # run_mode NAME RELAY-FLAGS
    local name=$1 flags=$2
    ip netns exec $X "$TPE" relay -u -t $flags --mark 0x99 --workers 1 -L :: 15353 original \
        2>"$WORK/relay-$name.err" &
    local rp=$!
    PIDS+=($rp)
    for _ in $(seq 100); do grep -q "listening" "$WORK/relay-$name.err" && break; sleep 0.05; done
    ip netns exec $C python3 - "$name" "$rp" <<'PY' || { kill $rp; fail "mode $name"; }
import os, signal, socket, sys, time
name, relay_pid = sys.argv[1], int(sys.argv[2])
cases = ((socket.AF_INET, "192.0.2.2", "198.51.100.7", "198.51.100.1"),
         (socket.AF_INET6, "2001:db8:1::2", "2001:db8:2::7", "2001:db8:2::1"))
for fam, me, z, x in cases:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((me, 40000 if fam == socket.AF_INET else 40001))
    s.settimeout(3)
    seen = set()
    for port in (9999, 9998, 9999):
        msg = b"hello %d" % port
        s.sendto(msg, (z, port))
        data, src = s.recvfrom(70000)
        payload, zsaw_ip, zsaw_port = data.rsplit(b"|", 2)
        assert payload == msg, (name, payload, msg)
        assert src[:2] == (z, port), f"{name}: reply came from {src}, expected {(z, port)}"
        want_ip = me if name == "client-port" else x
        assert zsaw_ip.decode() == want_ip, f"{name}: Z saw {zsaw_ip}, expected {want_ip}"
        if name == "client-port":
            assert int(zsaw_port) == s.getsockname()[1], f"{name}: Z saw port {zsaw_port}"
        seen.add(int(zsaw_port))
    assert len(seen) == 1, f"{name}: one client socket got {len(seen)} upstream ports {seen}"
    full = 1472 if fam == socket.AF_INET else 1452  # 1,500 minus IP and UDP headers
    for size, answered in ((full, True), (8000, False)):
        s.sendto(b"b" * size, (z, 9999))
        try:
            data, _ = s.recvfrom(70000)
            got = data.rsplit(b"|", 2)[0] == b"b" * size
        except socket.timeout:
            got = False
        assert got == answered, f"{name}: {size}-byte datagram answered={got}, expected {answered}"
        s.settimeout(0.5)
    dns = socket.socket(fam, socket.SOCK_DGRAM)
    dns.settimeout(3)
    dns.sendto(b"query", (z, 53))
    assert dns.recvfrom(100)[0].startswith(b"query|"), f"{name}: no DNS answer"
    # The burst's replies queue up at the relay while it is stopped (they leave Z 0.5 s after
    # "burst"); whatever the timing, all 31 must arrive, each whole and from Z's address and port.
    s.settimeout(5)
    s.sendto(b"burst", (z, 9998))
    time.sleep(0.2)
    os.kill(relay_pid, signal.SIGSTOP)
    time.sleep(0.8)
    os.kill(relay_pid, signal.SIGCONT)
    want = [b"r%02d" % i + b"x" * 1000 for i in range(30)] + [b"last!"]
    got = [s.recvfrom(70000) for _ in want]
    assert all(src[:2] == (z, 9998) for _, src in got), f"{name}: burst reply from elsewhere"
    assert sorted(d for d, _ in got) == sorted(want), f"{name}: burst merged, split or changed"
    print(f"ok {name} {fam.name}: replies from Z's addr:port, Z saw {want_ip}:{seen.pop()}")
PY
    kill -USR1 $rp; sleep 0.3
    local u
    u=$(grep -A3 "^total:" "$WORK/relay-$name.err" | tail -4)
    echo "$name: $(echo "$u" | grep -o "gso_sends=[0-9]* gso_dgrams=[0-9]*")"
    echo "$u" | grep -q "reply_sockets=6" || fail "$name: expected 6 reply sockets (2 families x 3 ports): $u"
    echo "$u" | grep -q "dns_answered=2" || fail "$name: expected 2 DNS flows ended by their answer: $u"
    echo "$u" | grep -q "emsgsize=2" || fail "$name: expected 2 emsgsize drops: $u"
    echo "$u" | grep -q "flows_active=2 " || fail "$name: expected 2 live flows (one per family): $u"
    kill $rp; wait $rp || fail "$name: relay exit status $?"
}

run_mode proxy ""
run_mode client-port "-T"

# The EADDRINUSE case: something on X holds port 53 on every address, without SO_REUSEADDR.
ip netns exec $X python3 -c '
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 53)); print("ready", flush=True); time.sleep(60)' >"$WORK/hog.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$WORK/hog.out" && break; sleep 0.05; done
ip netns exec $X "$TPE" relay -u -t --mark 0x99 --workers 1 -L :: 15353 original 2>"$WORK/relay-inuse.err" &
rp=$!
PIDS+=($rp)
for _ in $(seq 100); do grep -q "listening" "$WORK/relay-inuse.err" && break; sleep 0.05; done
ip netns exec $C python3 - <<'PY' || fail "DNS with port 53 held on X"
import socket
for fam, z in ((socket.AF_INET, "198.51.100.7"), (socket.AF_INET6, "2001:db8:2::7")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    for i in range(2):
        s.sendto(b"q%d" % i, (z, 53))
        data, src = s.recvfrom(100)
        assert data.startswith(b"q%d|" % i), data
        assert src[:2] == (z, 53), f"answer came from {src}"
    print(f"ok inuse {fam.name}: answers from {z}:53 through the raw fallback")
PY
grep -q "cannot send replies from .*:53: address in use" "$WORK/relay-inuse.err" \
    || fail "EADDRINUSE not explained"
kill -USR1 $rp; sleep 0.3
u=$(grep -A3 "^total:" "$WORK/relay-inuse.err" | tail -4)
echo "$u" | grep -q "reply_socket=0" || fail "inuse: replies dropped: $u"
echo "$u" | grep -q "dgrams_down=4" || fail "inuse: expected 4 answers relayed: $u"
kill $rp; wait $rp || fail "inuse: relay exit status $?"
echo "PASS test_udp_tproxy.sh"
