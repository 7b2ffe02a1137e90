#!/bin/bash
# Issue 11's flood: N short connections (default 50,000) through `tpengine relay` with close
# records on, then checks that records written + records dropped (tpengine_log_records_dropped_total)
# equals the connections the relay accepted, and prints the relay's CPU per connection. Each
# round also runs the same flood with records off (metrics on in both), interleaved, so the cost
# of the records is the difference. Relay on CPU 1, tpbench client and server on CPU 0, as in
# profile.sh. The ctest (relay.conn_log) keeps its small flood: this one is for the lead's runs.
#   bench/macro/flood_observe.sh [CONNECTIONS] [ROUNDS]       (defaults 50000 3)
#   FLOOD_FORMAT=json for JSON records; PROFILE_RT=PRIO runs everything SCHED_FIFO.
# Exit status 1 when a round loses a record (written + dropped != accepted) or a flood fails.
# "accepted" is one more than the flood: the script's own probe that the port is open.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TPBENCH=${TPBENCH:-$REPO/build-bench/tools/tpbench/tpbench}
TPENGINE=${TPENGINE:-$REPO/build-bench/tools/tpengine/tpengine}
CONNS=${1:-50000}; ROUNDS=${2:-3}; FMT=${FLOOD_FORMAT:-logfmt}
RT=()
[ -n "${PROFILE_RT:-}" ] && RT=(chrt -f "$PROFILE_RT")
WORK=$(mktemp -d /tmp/tpbench-flood.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
metric() {  # metric URL NAME: the sum of NAME's samples
    python3 - "$1" "$2" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
print(sum(int(float(m.group(1))) for m in re.finditer(
    r"^" + re.escape(sys.argv[2]) + r"(?:\{[^}]*\})? (\S+)$", text, re.M)))
PY
}

SPORT=$(port)
"${RT[@]}" taskset -c 0 "$TPBENCH" serve --listen 127.0.0.1:$SPORT --mode echo 2>/dev/null & PIDS+=($!)
wait_port $SPORT

# run VARIANT ROUND: one flood; prints a line and returns 1 if records were lost.
run() {
    local v=$1 i=$2 lport log extra=()
    lport=$(port); log="$WORK/relay-$v-$i.log"
    [ "$v" = L ] && extra=(--log-connections "$FMT")
    "${RT[@]}" taskset -c 1 "$TPENGINE" relay --workers 1 --metrics 127.0.0.1:0 "${extra[@]}" \
        -L 127.0.0.1 "$lport" 127.0.0.1 "$SPORT" 2>"$log" & local rpid=$!
    wait_port "$lport"
    local url=""
    for _ in $(seq 100); do
        url=$(sed -n 's/.*metrics on \(http:[^ ]*\).*/\1/p' "$log" | head -1)
        [ -n "$url" ] && break; sleep 0.05
    done
    # Per thread: the worker's share and the writer thread's share are reported apart.
    local tids; tids=$(ls /proc/$rpid/task | paste -sd,)
    "${RT[@]}" perf stat --per-thread -e task-clock -t "$tids" -o "$WORK/stat-$v-$i.txt" & local sp=$!
    sleep 0.2
    "${RT[@]}" taskset -c 0 "$TPBENCH" connrate --target 127.0.0.1:$lport --concurrency 16 \
        --size 128 --count "$CONNS" --duration 600 --json >"$WORK/out-$v-$i.json"
    # Wait for the relay to finish every connection and the writer to drain (polls every 20 ms).
    local acc=0 written=0 dropped=0 settled=0
    for _ in $(seq 200); do
        acc=$(metric "$url" tpengine_connections_accepted_total)
        local active; active=$(metric "$url" tpengine_connections_active)
        dropped=$(metric "$url" tpengine_log_records_dropped_total)
        written=$(grep -c 'event=close\|"event":"close"' "$log")
        if [ "$active" = 0 ] && { [ "$v" = A ] || [ $((written + dropped)) = "$acc" ]; }; then
            settled=1; break
        fi
        sleep 0.1
    done
    kill -INT $sp; wait $sp 2>/dev/null
    kill $rpid; wait $rpid 2>/dev/null
    python3 - "$WORK/out-$v-$i.json" "$WORK/stat-$v-$i.txt" "$v" "$i" "$acc" "$written" \
        "$dropped" "$settled" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
threads = {}
for m in re.finditer(r"^\s*(\S+)-\d+\s+([\d,.]+)\s+msec\s+task-clock", open(sys.argv[2]).read(), re.M):
    name = "worker" if m.group(1).startswith("tpengine-w") else "writer" if m.group(1) == "tpengine-log" else "other"
    threads[name] = threads.get(name, 0.0) + float(m.group(2).replace(",", ""))
ms = sum(threads.values())
v, i, acc, written, dropped, settled = sys.argv[3], sys.argv[4], *map(int, sys.argv[5:])
conns = r["ok"] + r["errors_total"]
per = lambda x: x * 1000 / max(acc, 1)
line = (f"{i} {v} connections {conns} (ok {r['ok']}, errors {r['errors_total']}) accepted {acc} "
        f"relay {per(ms):.2f} us CPU per connection (worker {per(threads.get('worker', 0)):.2f}, "
        f"writer {per(threads.get('writer', 0)):.2f}, other {per(threads.get('other', 0)):.2f})")
if v == "L":
    line += f"; records written {written} + dropped {dropped} = {written + dropped}"
    line += " == accepted" if settled else " != accepted: RECORDS LOST"
print(line)
sys.exit(0 if settled and r["ok"] > 0 else 1)
PY
}

fail=0
OUT="$WORK/summary"
for ((i = 1; i <= ROUNDS; i++)); do
    for v in A L; do
        run $v $i | tee -a "$OUT" || fail=1
    done
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
us = {}
for line in open(sys.argv[1]):
    m = re.match(r"\d+ (\w) .* relay ([\d.]+) us", line)
    if m:
        us.setdefault(m.group(1), []).append(float(m.group(2)))
if "A" in us and "L" in us:
    a, l = statistics.median(us["A"]), statistics.median(us["L"])
    print(f"median relay us per connection: A (records off) {a:.2f}, L (records on) {l:.2f}, "
          f"{100 * (l / a - 1):+.1f}%  (n={len(us['L'])})")
PY
exit $fail
