#!/bin/bash
# One command for the side-by-side comparison: tpbench workloads direct, through tpengine, HAProxy
# (with and without splice), nginx stream and socat, on loopback, relay on CPU 1, client and server
# on CPU 0. See compare.py --help. Prints the table; --out FILE also writes it as Markdown.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# 10,000 relayed connections need ~20,000 descriptors in the relay alone.
ulimit -n 1048576 2>/dev/null || ulimit -n 200000 2>/dev/null || true
exec python3 "$HERE/compare.py" "$@"
