#!/bin/bash
# Loopback round for tpbench: serve (echo, sink, source, http) and every client mode against it;
# the counts must add up, a refused target must be an error (exit 1), never a crash.
# Usage: loopback_test.sh PATH/TO/tpbench
set -u
TPBENCH=${1:?usage: loopback_test.sh TPBENCH}
WORK=$(mktemp -d /tmp/tpbench-test.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# start_server MODE THREADS -> sets PORT
start_server() {
    local log=$WORK/serve-$1.log
    "$TPBENCH" serve --listen 127.0.0.1:0 --mode "$1" --threads "$2" 2>"$log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    fail "serve $1 did not come up: $(cat "$log")"
}

# check JSONFILE PYTHON-EXPR...: each expression over `r` (the parsed JSON) must hold.
check() {
    local file=$1; shift
    python3 - "$file" "$@" <<'PY' || fail "checks on $file: $(cat "$file")"
import json, sys
r = json.load(open(sys.argv[1]))
bad = [e for e in sys.argv[2:] if not eval(e, {}, {"r": r})]
for e in bad:
    print("  not true:", e, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

start_server echo 2; ECHO=$PORT
start_server sink 1; SINK=$PORT
start_server source 1; SOURCE=$PORT
start_server http 1; HTTP=$PORT

run() {  # run NAME ARGS...: JSON to $WORK/NAME.json, must exit 0
    local name=$1; shift
    "$TPBENCH" "$@" --json >"$WORK/$name.json" 2>"$WORK/$name.err" \
        || fail "$name exited $?: $(cat "$WORK/$name.err")"
}

run up throughput --target 127.0.0.1:$SINK --connections 4 --duration 1 --threads 2
check "$WORK/up.json" 'r["connected"] == 4' 'r["bytes_sent"] > 0' 'r["bytes_received"] == 0' \
    'r["errors_total"] == 0' '0 < r["fairness_min_max"] <= 1'

run down throughput --target 127.0.0.1:$SOURCE --connections 2 --duration 1 --direction down
check "$WORK/down.json" 'r["bytes_received"] > 0' 'r["bytes_sent"] == 0' 'r["errors_total"] == 0'

run both throughput --target 127.0.0.1:$ECHO --connections 2 --duration 1 --direction both
check "$WORK/both.json" 'r["bytes_received"] > 0' 'r["bytes_sent"] >= r["bytes_received"]' \
    'r["errors_total"] == 0'

run rr rr --target 127.0.0.1:$ECHO --connections 16 --size 128 --duration 1 --threads 2
check "$WORK/rr.json" 'r["connected"] == 16' 'r["responses"] > 0' \
    'r["requests"] == r["responses"]' \
    'r["bytes_sent"] + r["bytes_received"] == r["responses"] * 128 * 2' \
    'r["errors_total"] == 0' \
    '0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["max"]'

# Requests larger than the server's receive buffers arrive in pieces and must still add up.
run rrbig rr --target 127.0.0.1:$ECHO --connections 2 --size 200000 --duration 0.5
check "$WORK/rrbig.json" 'r["responses"] > 0' 'r["requests"] == r["responses"]' \
    'r["bytes_sent"] + r["bytes_received"] == r["responses"] * 200000 * 2' 'r["errors_total"] == 0'

# Fixed schedule: 4 connections at 400 req/s for 1 s can never issue more than the schedule holds.
run rate rr --target 127.0.0.1:$ECHO --connections 4 --size 64 --duration 1 --rate 400
check "$WORK/rate.json" 'r["requests"] == r["responses"]' '0 < r["responses"] <= 404' \
    'r["errors_total"] == 0'

run conn connrate --target 127.0.0.1:$ECHO --concurrency 4 --duration 1 --size 32 --threads 2
check "$WORK/conn.json" 'r["ok"] > 0' 'r["attempts"] == r["ok"]' 'r["errors_total"] == 0' \
    'r["bytes_sent"] == r["bytes_received"] == r["ok"] * 32' \
    '0 < r["latency_us"]["p50"] <= r["latency_us"]["max"]'
# --count: exactly that many connections over all threads, well before --duration.
run count connrate --target 127.0.0.1:$ECHO --concurrency 4 --count 1000 --duration 60 --size 32 --threads 2
check "$WORK/count.json" 'r["ok"] == r["attempts"] == 1000' 'r["errors_total"] == 0' \
    'r["duration_s"] < 30'

# A refused target: an error with its cause, exit status 1, no crash.
FREE=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TPBENCH" connrate --target 127.0.0.1:$FREE --concurrency 2 --duration 0.3 --json \
    >"$WORK/refused.json" 2>"$WORK/refused.err"
rc=$?
[ $rc -eq 1 ] || fail "connrate to a closed port exited $rc (want 1)"
check "$WORK/refused.json" 'r["ok"] == 0' 'r["errors"]["refused"] > 0' \
    'r["errors_total"] == r["attempts"]'
grep -q "refused" "$WORK/refused.err" || fail "no 'refused' in the error message"
"$TPBENCH" throughput --target 127.0.0.1:$FREE --connections 3 --duration 0.3 2>"$WORK/tr.err"
rc=$?
[ $rc -eq 1 ] || fail "throughput to a closed port exited $rc (want 1)"
grep -q "refused 3" "$WORK/tr.err" || fail "throughput refused count: $(cat "$WORK/tr.err")"

# hold: idle connections, each proven with one exchange.
"$TPBENCH" hold --target 127.0.0.1:$ECHO --connections 50 --duration 0.2 2>"$WORK/hold.err" \
    || fail "hold exited $?: $(cat "$WORK/hold.err")"
grep -q "holding 50 connections" "$WORK/hold.err" || fail "hold: $(cat "$WORK/hold.err")"

# http: two pipelined requests get two responses.
python3 - "$HTTP" <<'PY' || fail "http mode"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while data.count(b"HTTP/1.1 200 OK") < 2:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("closed after %r" % data)
    data += chunk
PY

# UDP: echo counts add up (closed loop: every datagram answered or timed out), sizes kept, round
# trips measured; the sink receives and sends nothing back.
start_server udp-echo 2; UECHO=$PORT
start_server udp-sink 1; USINK=$PORT
run uecho udp --target 127.0.0.1:$UECHO --flows 4 --size 100 --window 2 --duration 1 --threads 2
check "$WORK/uecho.json" 'r["sent"] > 0' 'r["received"] == r["sent"]' 'r["loss_pct"] == 0' \
    'r["rtt_us"]["count"] > 0' 'r["rtt_us"]["p50"] > 0' 'r["send_errors"] == 0'
run urate udp --target 127.0.0.1:$UECHO --flows 2 --size 1400 --rate 2000 --duration 1
check "$WORK/urate.json" '1500 <= r["sent"] <= 2100' 'r["received"] == r["sent"]'
run usink udp --target 127.0.0.1:$USINK --flows 2 --size 64 --rate 1000 --duration 1 --sink
check "$WORK/usink.json" 'r["sent"] > 0' 'r["received"] == 0' 'r["echo"] is False'

# Usage errors exit 2.
"$TPBENCH" rr --connections 1 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "missing --target exited $rc (want 2)"

# The servers survived all of it and stop cleanly on SIGTERM.
for p in "${PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || fail "a server died during the round"
    kill -TERM "$p"
done
for p in "${PIDS[@]}"; do
    wait "$p" || fail "server $p exited $? on SIGTERM"
done
PIDS=()
echo "tpbench loopback round: all counts add up"
