#!/bin/bash
# UDP side-by-side comparison: direct, tpengine relay -u, nginx stream (listen udp), socat, with
# tpbench udp (and sockperf if installed) on loopback; relay on CPU 1, client and server on CPU 0.
# See udp_compare.py --help. --idle-flows 100000 also measures RSS per idle flow.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ulimit -n 1048576 2>/dev/null || ulimit -n 200000 2>/dev/null || true
exec python3 "$HERE/udp_compare.py" "$@"
