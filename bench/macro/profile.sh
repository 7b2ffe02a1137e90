#!/bin/bash
# Profiles one relay under one tpbench workload: io_uring counts per unit of work (SQEs, enters,
# poll arms), relay CPU per unit, and the top symbols (perf record -e cpu-clock; this VM has no
# hardware counters). Relay on CPU 1, client and server on CPU 0, as in compare.sh.
#   bench/macro/profile.sh [--relay "CMD with {LISTEN} {SERVER}"] WORKLOAD [SECONDS]
#   WORKLOAD: bulk1 | bulk8 | rr64 | pingpong | connrate
# Default relay: tpengine relay --workers 1 -L 127.0.0.1 {LISTEN} 127.0.0.1 {SERVER}
# PROFILE_RT=PRIO runs relay, client and server SCHED_FIFO (a busy shared machine).
set -u
RT=()
[ -n "${PROFILE_RT:-}" ] && RT=(chrt -f "$PROFILE_RT")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TPBENCH=${TPBENCH:-$REPO/build-bench/tools/tpbench/tpbench}
TPENGINE=${TPENGINE:-$REPO/build-bench/tools/tpengine/tpengine}
RELAY="$TPENGINE relay --workers 1 -L 127.0.0.1 {LISTEN} 127.0.0.1 {SERVER}"
if [ "${1:-}" = "--relay" ]; then RELAY=$2; shift 2; fi
WL=${1:?usage: profile.sh [--relay CMD] bulk1|bulk8|rr64|pingpong|connrate [SECONDS]}
SECS=${2:-3}
case $WL in
    bulk1) MODE=sink; ARGS="throughput --connections 1 --direction up"; UNIT=MB ;;
    bulk8) MODE=sink; ARGS="throughput --connections 8 --direction up"; UNIT=MB ;;
    rr64) MODE=echo; ARGS="rr --connections 64 --size 128"; UNIT=request ;;
    pingpong) MODE=echo; ARGS="rr --connections 1 --size 128"; UNIT=request ;;
    connrate) MODE=echo; ARGS="connrate --concurrency 16 --size 128"; UNIT=connection ;;
    *) echo "unknown workload $WL" >&2; exit 2 ;;
esac
WORK=$(mktemp -d /tmp/tpbench-profile.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

SPORT=$(port); LPORT=$(port)
"${RT[@]}" taskset -c 0 "$TPBENCH" serve --listen 127.0.0.1:$SPORT --mode $MODE 2>/dev/null & PIDS+=($!)
wait_port $SPORT
CMD=${RELAY//\{LISTEN\}/$LPORT}; CMD=${CMD//\{SERVER\}/$SPORT}
"${RT[@]}" taskset -c 1 $CMD >"$WORK/relay.log" 2>&1 & RPID=$!; PIDS+=($RPID)
wait_port $LPORT

EV=io_uring:io_uring_submit_req,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_poll_arm,task-clock
"${RT[@]}" perf stat -e $EV -p $RPID -o "$WORK/stat.txt" & SP=$!
"${RT[@]}" perf record -q -e cpu-clock -g -p $RPID -o "$WORK/perf.data" 2>/dev/null & RP=$!
sleep 0.2
"${RT[@]}" taskset -c 0 "$TPBENCH" $ARGS --target 127.0.0.1:$LPORT --duration $SECS --json >"$WORK/out.json"
kill -INT $SP $RP; wait $SP $RP 2>/dev/null
[ -n "${PROFILE_KEEP:-}" ] && cp "$WORK/perf.data" "$PROFILE_KEEP"

python3 - "$WORK/out.json" "$WORK/stat.txt" "$UNIT" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
stat = open(sys.argv[2]).read()
def count(name):
    m = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + re.escape(name), stat)
    return float(m.group(1).replace(",", "")) if m else 0.0
unit = sys.argv[3]
if unit == "MB":
    n = (r["bytes_sent"] + r["bytes_received"]) / 1e6
    print(f"{r['gbit_s']:.2f} Gbit/s")
elif unit == "request":
    n = r["responses"]
    print(f"{r['requests_per_s']:.0f} req/s, p50 {r['latency_us']['p50']:.1f} us, p99 {r['latency_us']['p99']:.1f} us")
else:
    n = r["ok"]
    print(f"{r['connections_per_s']:.0f} conn/s, errors {r['errors_total']}")
sqe, enter, arm, ms = (count("io_uring:io_uring_submit_req"), count("syscalls:sys_enter_io_uring_enter"),
                       count("io_uring:io_uring_poll_arm"), count("task-clock"))
print(f"relay per {unit}: {sqe / n:.2f} SQEs, {enter / n:.2f} io_uring_enter, "
      f"{arm / n:.2f} poll arms, {ms * 1000 / n:.2f} us CPU; {sqe / max(enter, 1):.1f} SQEs per enter")
PY
echo "top symbols (relay process, cpu-clock samples):"
perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym -g none 2>/dev/null \
    | grep '%' | head -15
