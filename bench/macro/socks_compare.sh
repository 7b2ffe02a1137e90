#!/bin/bash
# tpengine vs redsocks in front of the same SOCKS5 server (danted), in the three-host lab
# (tools/lab/lab.sh: client Y -- router X -- server Z). Y's connections to Z are intercepted in X:
#   tpengine:        TPROXY to a listener whose route sends everything through danted
#                    (Z:9010 sink, Z:9011 echo)
#   tpengine+sniff:  the same, behind a domains route, so every connection is sniffed first
#                    (Z:9012 sink, Z:9013 echo; tpbench's bytes carry no name: the default route)
#   redsocks:        REDIRECT to redsocks (type socks5) (Z:9020 sink, Z:9021 echo)
# danted runs on Z. The relay (tpengine -c, one worker, or redsocks) is on CPU 1; danted, the
# tpbench client and servers on CPU 0. Repetitions interleaved, each starting with the next
# method, so none always runs right after another (a later run meets more of the earlier runs'
# TIME_WAIT sockets on X); median (min-max). Relay CPU from
# the relay process's threads (/proc/PID/task/*/schedstat, in ns: the 10 ms ticks of
# /proc/PID/stat are too coarse at a few hundred connections per run): Gbit/s per busy relay core
# (bulk1), relay-core us per connection (connrate).
#   bench/macro/socks_compare.sh [--reps N] [--duration S] [--rt PRIO]
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TPBENCH=${TPBENCH:-$REPO/build-bench/tools/tpbench/tpbench}
TPENGINE=${TPENGINE:-$REPO/build-bench/tools/tpengine/tpengine}
LAB=$REPO/tools/lab/lab.sh
REPS=3
DUR=2
RT=()
while [ $# -gt 0 ]; do
    case $1 in
    --reps) REPS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --rt) RT=(chrt -f "$2"); shift 2 ;;
    *) echo "usage: socks_compare.sh [--reps N] [--duration S] [--rt PRIO]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "socks_compare.sh: needs root (network namespaces)" >&2; exit 77; }
[ -x "$TPBENCH" ] && [ -x "$TPENGINE" ] || { echo "socks_compare.sh: build tpbench and tpengine in build-bench first (or set TPBENCH, TPENGINE)" >&2; exit 2; }
for c in danted redsocks; do
    command -v $c >/dev/null || { echo "socks_compare.sh: needs $c (tools/install-deps.sh)" >&2; exit 77; }
done

export LAB_PREFIX=bs$$
WORK=$(mktemp -d /tmp/tpbench-socks.XXXXXX)
chmod 755 "$WORK"
source "$(dirname "$0")/socks_lab.sh"
socks_lab_up "${RT[@]}"
for p in 9010 9012 9020; do in_z "${RT[@]}" taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode sink 2>/dev/null & done
for p in 9011 9013 9021; do in_z "${RT[@]}" taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode echo 2>/dev/null & done

cat >"$WORK/tp.yaml" <<YAML
workers: 1
nftables: {table: tpbench_socks}
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
  - {name: s-plain, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9010, 9011], action: tproxy, listener: plain}
  - {name: s-sniff, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9012, 9013], action: tproxy, listener: sniff}
YAML
ip netns exec "$LAB_PREFIX-x" "${RT[@]}" taskset -c 1 "$TPENGINE" -c "$WORK/tp.yaml" >"$WORK/tpengine.log" 2>&1 &
TP_PID=$!
PIDS+=($TP_PID)
ready "$WORK/tpengine.log" $TP_PID 'running \('

start_redsocks "${RT[@]}"

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
relay_pid() { if [ "$1" = redsocks ]; then echo $RS_PID; else echo $TP_PID; fi; }
target() {  # RELAY KIND
    case $1/$2 in
    tpengine/sink) echo $Z:9010 ;; tpengine/echo) echo $Z:9011 ;;
    tpengine+sniff/sink) echo $Z:9012 ;; tpengine+sniff/echo) echo $Z:9013 ;;
    redsocks/sink) echo $Z:9020 ;; redsocks/echo) echo $Z:9021 ;;
    esac
}
METHODS=(tpengine tpengine+sniff redsocks)
for rep in $(seq "$REPS"); do
    for wl in bulk1 connrate; do
        case $wl in
        bulk1) kind=sink; args="throughput --connections 1" ;;
        connrate) kind=echo; args="connrate --concurrency 16 --size 128" ;;
        esac
        for i in 0 1 2; do
            m=${METHODS[$(((i + rep) % 3))]}
            pid=$(relay_pid $m)
            before=$(cpu_ns "$pid")
            in_y "${RT[@]}" taskset -c 0 "$TPBENCH" $args --target "$(target $m $kind)" --duration "$DUR" --json \
                >"$WORK/run.json" 2>"$WORK/run.err"
            after=$(cpu_ns "$pid")
            python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["method"]=sys.argv[2]; r["workload"]=sys.argv[3]; r["relay_ns"]=int(sys.argv[4]); print(json.dumps(r))' \
                "$WORK/run.json" "$m" $wl $((after - before)) >>"$WORK/all.jsonl" 2>/dev/null ||
                echo "{\"method\":\"$m\",\"workload\":\"$wl\",\"failed\":true}" >>"$WORK/all.jsonl"
        done
    done
done
[ -n "${KEEP_TMP:-}" ] && cp -r "$WORK" "$WORK.kept" && echo "kept $WORK.kept" >&2

python3 - "$WORK/all.jsonl" "$REPS" "$DUR" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
metric = {"bulk1": ("gbit_s", "Gbit/s"), "connrate": ("connections_per_s", "conn/s")}
methods = ("tpengine", "tpengine+sniff", "redsocks")
print(f"SOCKS5 through danted: tpengine vs redsocks, {sys.argv[2]} interleaved reps of {sys.argv[3]} s, median (min-max)")
print("| workload | figure | " + " | ".join(methods) + " |")
print("|---|---|" + "---|" * len(methods))
for wl, (key, unit) in metric.items():
    cells, cost = [], []
    for m in methods:
        ok = [r for r in runs if r["method"] == m and r["workload"] == wl and not r.get("failed")]
        if not ok:
            cells.append("failed"); cost.append("-"); continue
        v = [r[key] for r in ok]
        errs = sum(r.get("errors_total", 0) for r in ok)
        cells.append(f"{statistics.median(v):,.2f} ({min(v):,.2f}-{max(v):,.2f})" + (f" err {errs}" if errs else ""))
        if key == "gbit_s":
            per = [r[key] / (r["relay_ns"] / 1e9 / r["duration_s"]) for r in ok if r["relay_ns"]]
            cost.append(f"{statistics.median(per):.2f} Gbit/s per busy core" if per else "-")
        else:
            per = [r["relay_ns"] / 1e3 / r["ok"] for r in ok if r.get("ok")]
            cost.append(f"{statistics.median(per):.1f} us/conn" if per else "-")
    print(f"| {wl} | {unit} | " + " | ".join(cells) + " |")
    print(f"| {wl} | relay CPU | " + " | ".join(cost) + " |")
PY
