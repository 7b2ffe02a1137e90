#!/bin/bash
# Interleaved A/B of the observability costs (issue 11), with profile.sh's relay CPU per unit:
#   A  = plain relay                      (counters only: they are always on)
#   M  = --metrics 127.0.0.1:0, never scraped
#   L  = --log-connections logfmt         (close records, stderr to a file)
#   X  = another binary, same flags as A  (TPENGINE_B=/path/to/tpengine: e.g. main before
#        the per-listener counters, to price the counters themselves)
# Usage: bench/macro/ab_observe.sh [PAIRS] [SECONDS] [WORKLOADS...]   (defaults 6 5 pingpong rr64 connrate)
# Prints one line per run, then the median relay us per unit per variant and workload.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TPENGINE=${TPENGINE:-$REPO/build-bench/tools/tpengine/tpengine}
PAIRS=${1:-6}; SECS=${2:-5}; shift 2 2>/dev/null
WLS=("${@:-}"); [ -z "${WLS[0]}" ] && WLS=(pingpong rr64 connrate)
BASE="relay --workers 1 -L 127.0.0.1 {LISTEN} 127.0.0.1 {SERVER}"
declare -A CMD=([A]="$TPENGINE $BASE"
                [M]="$TPENGINE relay --workers 1 --metrics 127.0.0.1:0 -L 127.0.0.1 {LISTEN} 127.0.0.1 {SERVER}"
                [L]="$TPENGINE relay --workers 1 --log-connections logfmt -L 127.0.0.1 {LISTEN} 127.0.0.1 {SERVER}")
VARIANTS=(A M L)
if [ -n "${TPENGINE_B:-}" ]; then CMD[X]="$TPENGINE_B $BASE"; VARIANTS+=(X); fi
OUT=$(mktemp /tmp/ab_observe.XXXXXX)
for ((i = 1; i <= PAIRS; i++)); do
    for wl in "${WLS[@]}"; do
        for v in "${VARIANTS[@]}"; do
            us=$("$REPO/bench/macro/profile.sh" --relay "${CMD[$v]}" "$wl" "$SECS" |
                 sed -n 's/.* \([0-9.]*\) us CPU;.*/\1/p')
            echo "$i $wl $v ${us:-nan}" | tee -a "$OUT"
        done
    done
done
python3 - "$OUT" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, wl, v, us = line.split()
    if us != "nan":
        runs.setdefault((wl, v), []).append(float(us))
for wl in sorted({k[0] for k in runs}):
    base = statistics.median(runs.get((wl, "A"), [float("nan")]))
    for v in ("A", "M", "L", "X"):
        if (wl, v) in runs:
            xs = runs[(wl, v)]
            med = statistics.median(xs)
            print(f"{wl:9s} {v}: relay {med:8.2f} us per unit (min {min(xs):.2f} max {max(xs):.2f}, "
                  f"n={len(xs)})  {100 * (med / base - 1):+.1f}% vs A")
PY
rm -f "$OUT"
