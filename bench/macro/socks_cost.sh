#!/bin/bash
# Where the relay core's time goes through SOCKS5 (issue 10), counted rather than timed: the lab of
# socks_compare.sh (client Y -- router X -- server Z, danted on Z, relay on CPU 1, danted, client
# and servers on CPU 0), with four relays of Y's connections to Z, run in turn, interleaved:
#   socks:    tpengine, a route through danted            (Z:9010 sink, Z:9011 echo)
#   piped:    the same with `pipeline: true`               (Z:9016 sink, Z:9017 echo)
#   direct:   tpengine, no route (straight to Z)           (Z:9014 sink, Z:9015 echo)
#   redsocks: REDIRECT to redsocks (type socks5)           (Z:9020 sink, Z:9021 echo)
# `perf stat -p` on the relay over each run: task-clock (this VM has no cycle counter), syscalls,
# io_uring SQEs, CQEs and enters, context switches, per GB (bulk1) and per connection (connrate).
# The perf window and the tpbench run start together and last as long: a few ms of skew per run.
# PERF_RECORD=DIR: `perf record -g` each method's last repetition into DIR instead (kernel too).
#   bench/macro/socks_cost.sh [--reps N] [--duration S]
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TPBENCH=${TPBENCH:-$REPO/build-bench/tools/tpbench/tpbench}
TPENGINE=${TPENGINE:-$REPO/build-bench/tools/tpengine/tpengine}
LAB=$REPO/tools/lab/lab.sh
REPS=3
DUR=2
while [ $# -gt 0 ]; do
    case $1 in
    --reps) REPS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    *) echo "usage: socks_cost.sh [--reps N] [--duration S]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "socks_cost.sh: needs root (network namespaces)" >&2; exit 77; }
[ -x "$TPBENCH" ] && [ -x "$TPENGINE" ] || { echo "socks_cost.sh: build tpbench and tpengine in build-bench first (or set TPBENCH, TPENGINE)" >&2; exit 2; }
for c in danted redsocks perf; do
    command -v $c >/dev/null || { echo "socks_cost.sh: needs $c (tools/install-deps.sh)" >&2; exit 77; }
done

export LAB_PREFIX=bk$$
WORK=$(mktemp -d /tmp/tpbench-socks-cost.XXXXXX)
chmod 755 "$WORK"
source "$(dirname "$0")/socks_lab.sh"
socks_lab_up
for p in 9010 9014 9016 9020; do in_z taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode sink 2>/dev/null & done
for p in 9011 9015 9017 9021; do in_z taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode echo 2>/dev/null & done

cat >"$WORK/tp.yaml" <<YAML
workers: 1
nftables: {table: tpbench_socks_cost}
upstreams:
  - {name: socks, type: socks5, address: "$Z:1080"}
  - {name: socksp, type: socks5, address: "$Z:1080", pipeline: true}
listeners:
  - name: plain
    address: "0.0.0.0"
    port: 50081
    transparent: true
    routes:
      - {upstream: socks}
  - name: piped
    address: "0.0.0.0"
    port: 50084
    transparent: true
    routes:
      - {upstream: socksp}
  - name: direct
    address: "0.0.0.0"
    port: 50083
    transparent: true
rules:
  - {name: s-piped, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9016, 9017], action: tproxy, listener: piped}
  - {name: s-direct, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9014, 9015], action: tproxy, listener: direct}
  - {name: s-plain, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9010, 9011], action: tproxy, listener: plain}
YAML
ip netns exec "$LAB_PREFIX-x" taskset -c 1 "$TPENGINE" -c "$WORK/tp.yaml" >"$WORK/tpengine.log" 2>&1 &
TP_PID=$!
PIDS+=($TP_PID)
ready "$WORK/tpengine.log" $TP_PID 'running \('

start_redsocks

relay_pid() { if [ "$1" = redsocks ]; then echo $RS_PID; else echo $TP_PID; fi; }
target() {  # RELAY KIND
    case $1/$2 in
    socks/sink) echo $Z:9010 ;; socks/echo) echo $Z:9011 ;;
    direct/sink) echo $Z:9014 ;; direct/echo) echo $Z:9015 ;;
    piped/sink) echo $Z:9016 ;; piped/echo) echo $Z:9017 ;;
    redsocks/sink) echo $Z:9020 ;; redsocks/echo) echo $Z:9021 ;;
    esac
}
EV=task-clock,context-switches,io_uring:io_uring_submit_req,io_uring:io_uring_complete
EV=$EV,syscalls:sys_enter_io_uring_enter,raw_syscalls:sys_enter
METHODS=(socks piped direct redsocks)
[ -n "${PERF_RECORD:-}" ] && mkdir -p "$PERF_RECORD"
for rep in $(seq "$REPS"); do
    for wl in bulk1 connrate; do
        case $wl in
        bulk1) kind=sink; args="throughput --connections 1" ;;
        connrate) kind=echo; args="connrate --concurrency 16 --size 128" ;;
        esac
        for i in 0 1 2 3; do
            m=${METHODS[$(((i + rep) % 4))]}
            pid=$(relay_pid $m)
            if [ -n "${PERF_RECORD:-}" ] && [ "$rep" -eq "$REPS" ]; then
                perf record -g -p "$pid" -o "$PERF_RECORD/$m-$wl.data" -- sleep "$DUR" >/dev/null 2>&1 &
            else
                perf stat -x, -e "$EV" -p "$pid" -o "$WORK/stat-$m-$wl-$rep.txt" -- sleep "$DUR" 2>/dev/null &
            fi
            PP=$!
            in_y taskset -c 0 "$TPBENCH" $args --target "$(target $m $kind)" --duration "$DUR" --json \
                >"$WORK/run-$m-$wl-$rep.json" 2>/dev/null
            wait $PP
        done
    done
done
[ -n "${KEEP_TMP:-}" ] && cp -r "$WORK" "$WORK.kept" && echo "kept $WORK.kept" >&2

python3 - "$WORK" "$REPS" "$DUR" <<'PY'
import glob, json, re, statistics, sys
work, reps, dur = sys.argv[1:4]
rows = {}
for f in glob.glob(work + "/stat-*.txt"):
    m, wl, rep = re.match(r".*/stat-(\w+)-(bulk1|connrate)-(\d+)\.txt", f).groups()
    try:
        r = json.load(open(f"{work}/run-{m}-{wl}-{rep}.json"))
    except (OSError, ValueError):
        continue
    st = {}
    for line in open(f):
        p = line.strip().split(",")
        if len(p) > 3 and p[0][:1].isdigit():
            st[p[2]] = float(p[0])
    unit = r["gbit_s"] * r["duration_s"] / 8 if wl == "bulk1" else r.get("ok", 0)  # GB or connections
    if not unit or "task-clock" not in st:
        continue
    task = st["task-clock"] / 1e3 / unit if wl == "bulk1" else st["task-clock"] * 1e3 / unit
    per = [st.get(k, 0) / unit for k in ("raw_syscalls:sys_enter", "io_uring:io_uring_submit_req",
           "io_uring:io_uring_complete", "syscalls:sys_enter_io_uring_enter", "context-switches")]
    rows.setdefault((wl, m), []).append([task] + per + [r.get("errors_total", 0)])
print(f"Relay cost through SOCKS5, {reps} interleaved reps of {dur} s, median (min-max of task-clock)")
print("| workload | relay | task-clock | syscalls | SQEs | CQEs | enters | ctx switches | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for wl, unit in (("bulk1", "s/GB"), ("connrate", "us/conn")):
    for m in ("socks", "piped", "direct", "redsocks"):
        v = rows.get((wl, m))
        if not v:
            print(f"| {wl} | {m} | - (no perf stat run) |||||||")
            continue
        med = [statistics.median(x[i] for x in v) for i in range(6)]
        t = [x[0] for x in v]
        cells = " | ".join(f"{x:,.1f}" for x in med[1:])
        errs = sum(x[6] for x in v)
        print(f"| {wl} | {m} | {med[0]:.3f} {unit} ({min(t):.3f}-{max(t):.3f}) | {cells} | {errs:.0f} |")
PY
