#!/bin/bash
# DNAT vs REDIRECT vs TPROXY for the same tpbench workloads, in the seed's three-host lab
# (tools/lab/lab.sh: client Y -- router X -- server Z, in network namespaces of its own).
# One `tpengine -c` in X (one worker, CPU 1) holds all three rules on different ports:
#   redirect: Y -> Z:9000/9001, REDIRECT to listener 50080 (original destination from conntrack)
#   tproxy:   Y -> Z:9010/9011, TPROXY to listener 50081 (transparent; original destination =
#             the local address), both relays connecting upstream from X's own address
#   dnat:     Y -> X:9020/9021, DNAT to Z:9000/9001 (kernel forwarding, no relay)
# Client (Y) and servers (Z) on CPU 0. Repetitions interleaved; median (min-max). Relay CPU for
# redirect/tproxy from the tpengine process; DNAT's cost is softirq time no process owns.
#   bench/macro/methods.sh [--reps N] [--duration S] [--rt PRIO]   (--rt: SCHED_FIFO, busy machine)
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
    *) echo "usage: methods.sh [--reps N] [--duration S] [--rt PRIO]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "methods.sh: needs root (network namespaces)" >&2; exit 77; }
[ -x "$TPBENCH" ] && [ -x "$TPENGINE" ] || { echo "methods.sh: build tpbench and tpengine in build-bench first" >&2; exit 2; }

export LAB_PREFIX=bm$$
WORK=$(mktemp -d /tmp/tpbench-methods.XXXXXX)
chmod 755 "$WORK"
TP_PID=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$TP_PID" ]; then  # SIGTERM: tpengine removes its rules on a clean stop
        kill -TERM "$TP_PID" 2>/dev/null
        timeout 15 tail --pid="$TP_PID" -f /dev/null || kill -9 "$TP_PID" 2>/dev/null
    fi
    "$LAB" down >/dev/null 2>&1   # also kills the servers in the namespaces
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_y() { ip netns exec "$LAB_PREFIX-y" "$@"; }
in_x() { ip netns exec "$LAB_PREFIX-x" "$@"; }
in_z() { ip netns exec "$LAB_PREFIX-z" "$@"; }

"$LAB" up --spoof-route >/dev/null || exit 1
Z=198.51.100.2
X=192.0.2.1
# connrate opens ~10^4 connections a second to one address: without TIME_WAIT reuse (the kernel
# default only reuses on loopback) Y's and X's ephemeral ports run out within seconds.
for ns in y x; do ip netns exec "$LAB_PREFIX-$ns" sysctl -qw net.ipv4.tcp_tw_reuse=1; done
for p in 9000 9010; do in_z "${RT[@]}" taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode sink 2>/dev/null & done
for p in 9001 9011; do in_z "${RT[@]}" taskset -c 0 "$TPBENCH" serve --listen $Z:$p --mode echo 2>/dev/null & done
cat >"$WORK/methods.yaml" <<YAML
workers: 1
nftables: {table: tpbench_methods}
listeners:
  - {name: redir, address: "0.0.0.0", port: 50080, transparent: false, upstream: {to: original, source: proxy}}
  - {name: tp, address: "0.0.0.0", port: 50081, transparent: true, upstream: {to: original, source: proxy}}
rules:
  - {name: m-redirect, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9000, 9001], action: redirect, listener: redir}
  - {name: m-tproxy, interfaces: [lan0], protocol: tcp, destinations: [$Z/32], ports: [9010, 9011], action: tproxy, listener: tp}
  - {name: m-dnat-bulk, interfaces: [lan0], protocol: tcp, destinations: [$X/32], ports: [9020], action: dnat, to: "$Z:9000"}
  - {name: m-dnat-echo, interfaces: [lan0], protocol: tcp, destinations: [$X/32], ports: [9021], action: dnat, to: "$Z:9001"}
YAML
# Not through in_x: a backgrounded function is a subshell, and $! must be tpengine itself.
ip netns exec "$LAB_PREFIX-x" "${RT[@]}" taskset -c 1 "$TPENGINE" -c "$WORK/methods.yaml" >"$WORK/tpengine.log" 2>&1 &
TP_PID=$!
for _ in $(seq 100); do
    grep -qE 'relay listening on|running \(' "$WORK/tpengine.log" && break
    kill -0 $TP_PID 2>/dev/null || { echo "tpengine -c failed: $(cat "$WORK/tpengine.log")" >&2; exit 1; }
    sleep 0.1
done
sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$TP_PID/stat" 2>/dev/null || echo 0; }
# target for METHOD KIND(sink|echo)
target() {
    case $1/$2 in
    redirect/sink) echo $Z:9000 ;; redirect/echo) echo $Z:9001 ;;
    tproxy/sink) echo $Z:9010 ;; tproxy/echo) echo $Z:9011 ;;
    dnat/sink) echo $X:9020 ;; dnat/echo) echo $X:9021 ;;
    esac
}
for rep in $(seq "$REPS"); do
    for wl in bulk1 rr64 connrate; do
        case $wl in
        bulk1) kind=sink; args="throughput --connections 1" ;;
        rr64) kind=echo; args="rr --connections 64 --size 128" ;;
        connrate) kind=echo; args="connrate --concurrency 16 --size 128" ;;
        esac
        for m in redirect tproxy dnat; do
            before=$(cpu_ticks)
            in_y "${RT[@]}" taskset -c 0 "$TPBENCH" $args --target "$(target $m $kind)" --duration "$DUR" --json \
                >"$WORK/run.json" 2>"$WORK/run.err"
            after=$(cpu_ticks)
            python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["method"]=sys.argv[2]; r["workload"]=sys.argv[3]; r["relay_ticks"]=int(sys.argv[4]); print(json.dumps(r))' \
                "$WORK/run.json" $m $wl $((after - before)) >>"$WORK/all.jsonl" 2>/dev/null ||
                echo "{\"method\":\"$m\",\"workload\":\"$wl\",\"failed\":true}" >>"$WORK/all.jsonl"
        done
    done
done

python3 - "$WORK/all.jsonl" "$(getconf CLK_TCK)" "$REPS" "$DUR" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
tck = int(sys.argv[2])
metric = {"bulk1": ("gbit_s", "Gbit/s"), "rr64": ("requests_per_s", "req/s"),
          "connrate": ("connections_per_s", "conn/s")}
print(f"DNAT vs REDIRECT vs TPROXY in the three-host lab, {sys.argv[3]} interleaved reps of {sys.argv[4]} s, median (min-max)")
print("| workload | figure | redirect | tproxy | dnat (no relay) |")
print("|---|---|---|---|---|")
for wl, (key, unit) in metric.items():
    cells, p99s, cost = [], [], []
    for m in ("redirect", "tproxy", "dnat"):
        ok = [r for r in runs if r["method"] == m and r["workload"] == wl and not r.get("failed")]
        if not ok:
            cells.append("failed"); p99s.append("-"); cost.append("-"); continue
        v = [r[key] for r in ok]
        errs = sum(r.get("errors_total", 0) for r in ok)
        cells.append(f"{statistics.median(v):,.2f} ({min(v):,.2f}-{max(v):,.2f})"
                     + (f" err {errs}" if errs else ""))
        p99s.append(f"{statistics.median([r['latency_us']['p99'] for r in ok]):,.1f}" if "latency_us" in ok[0] else "-")
        if m == "dnat":
            cost.append("-")
        elif key == "gbit_s":
            per = [r[key] / (r["relay_ticks"] / tck / r["duration_s"]) for r in ok if r["relay_ticks"]]
            cost.append(f"{statistics.median(per):.2f} Gbit/s per busy core" if per else "-")
        else:
            n = "responses" if key == "requests_per_s" else "ok"
            per = [r["relay_ticks"] / tck * 1e6 / r[n] for r in ok if r[n]]
            cost.append(f"{statistics.median(per):.1f} us/unit" if per else "-")
    print(f"| {wl} | {unit} | " + " | ".join(cells) + " |")
    if key != "gbit_s":
        print(f"| {wl} | p99 us | " + " | ".join(p99s) + " |")
    print(f"| {wl} | relay CPU | " + " | ".join(cost) + " |")
PY
