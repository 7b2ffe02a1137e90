#!/bin/bash
# The relay's cost of domain sniffing per new connection (issue 10), counted rather than timed:
# one tpengine (one worker, CPU 1) in front of danted on Z, two listeners whose routes both send
# everything through danted, one of them behind a `domains` route so every connection is sniffed
# first (tpbench's bytes carry no name: the default route). tpbench connrate from Y (CPU 0) to
# each in turn, interleaved; `perf stat -p` on tpengine over each run: task-clock (this VM has no
# cycle counter), context switches, SQEs, CQEs, io_uring_enter calls and syscalls per connection.
# Prints one line per run and the median sniff/plain ratio of task-clock per connection.
#   bench/macro/sniff_cost.sh [--reps N] [--duration S] [--concurrency C]
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TPBENCH=${TPBENCH:-$REPO/build-bench/tools/tpbench/tpbench}
TPENGINE=${TPENGINE:-$REPO/build-bench/tools/tpengine/tpengine}
LAB=$REPO/tools/lab/lab.sh
REPS=5 DUR=3 CONC=16
while [ $# -gt 0 ]; do
    case $1 in
    --reps) REPS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    *) echo "usage: sniff_cost.sh [--reps N] [--duration S] [--concurrency C]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "sniff_cost.sh: needs root (network namespaces)" >&2; exit 77; }
[ -x "$TPBENCH" ] && [ -x "$TPENGINE" ] || { echo "sniff_cost.sh: build tpbench and tpengine in build-bench first (or set TPBENCH, TPENGINE)" >&2; exit 2; }
for c in danted perf; do
    command -v $c >/dev/null || { echo "sniff_cost.sh: needs $c" >&2; exit 77; }
done

export LAB_PREFIX=bn$$
WORK=$(mktemp -d /tmp/tpbench-sniff.XXXXXX)
chmod 755 "$WORK"
source "$(dirname "$0")/socks_lab.sh"
socks_lab_up
for p in 9011 9013; do in_z taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode echo 2>/dev/null & done
cat >"$WORK/tp.yaml" <<YAML
workers: 1
nftables: {table: tpbench_sniff}
upstreams:
  - {name: socks, type: socks5, address: "$Z:1080"}
listeners:
  - name: plain
    address: "0.0.0.0"
    port: 50081
    transparent: true
    routes:
      - {upstream: socks}
  - name: sniff
    address: "0.0.0.0"
    port: 50082
    transparent: true
    routes:
      - {domains: [never.example], upstream: socks}
      - {upstream: socks}
rules:
  - {name: s-plain, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9011], action: tproxy, listener: plain}
  - {name: s-sniff, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9013], action: tproxy, listener: sniff}
YAML
ip netns exec "$LAB_PREFIX-x" taskset -c 1 "$TPENGINE" -c "$WORK/tp.yaml" >"$WORK/tpengine.log" 2>&1 &
TP=$!
PIDS+=($TP)
for _ in $(seq 100); do grep -q 'running (' "$WORK/tpengine.log" && break; sleep 0.1; done
sleep 0.5

EV=task-clock,context-switches,io_uring:io_uring_submit_req,io_uring:io_uring_complete
EV=$EV,syscalls:sys_enter_io_uring_enter,raw_syscalls:sys_enter
for rep in $(seq "$REPS"); do
    for m in plain sniff; do
        port=9011
        [ $m = sniff ] && port=9013
        perf stat -x, -e "$EV" -p $TP -o "$WORK/stat-$m-$rep.txt" -- sleep $((DUR + 1)) 2>/dev/null &
        pp=$!
        sleep 0.3
        in_y taskset -c 0 "$TPBENCH" connrate --concurrency "$CONC" --size 128 --target $Z:$port \
            --duration "$DUR" --json >"$WORK/run-$m-$rep.json" 2>/dev/null
        wait $pp
    done
done

python3 - "$WORK" "$REPS" <<'PY'
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
keys = (("task-clock", "us"), ("context-switches", "cs"), ("io_uring:io_uring_submit_req", "sqe"),
        ("io_uring:io_uring_complete", "cqe"), ("syscalls:sys_enter_io_uring_enter", "enter"),
        ("raw_syscalls:sys_enter", "syscalls"))
per = {"plain": [], "sniff": []}
for rep in range(1, reps + 1):
    for m in ("plain", "sniff"):
        try:
            r = json.load(open(f"{work}/run-{m}-{rep}.json"))
        except (OSError, ValueError):
            print(f"{m:5s} rep {rep}: tpbench failed"); continue
        stat = {}
        for line in open(f"{work}/stat-{m}-{rep}.txt"):
            f = line.strip().split(",")
            if len(f) > 3 and not line.startswith("#"):
                try: stat[f[2]] = float(f[0])
                except ValueError: pass
        ok = max(r["ok"], 1)
        vals = {short: stat.get(k, 0) / ok for k, short in keys}
        vals["us"] *= 1000  # task-clock is in ms
        per[m].append(vals)
        print(f"{m:5s} rep {rep}: {r['ok']:6d} ok {r.get('errors_total', 0):4d} err | per connection: " +
              " ".join(f"{short} {vals[short]:.2f}" for _, short in keys))
pairs = [(p["us"], s["us"]) for p, s in zip(per["plain"], per["sniff"])]
if pairs:
    ratios = [s / p for p, s in pairs if p]
    print(f"task-clock per connection, sniff/plain: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f} max {max(ratios):.3f}, {len(ratios)} pairs)")
    for _, short in keys[1:]:
        d = [s[short] - p[short] for p, s in zip(per["plain"], per["sniff"])]
        print(f"  {short} per connection, sniff - plain: median {statistics.median(d):+.2f}")
PY
