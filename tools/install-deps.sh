#!/usr/bin/env bash
# Installs, from Debian 12's own archive, whatever tpengine needs to build, test, demo and
# benchmark and is not yet installed. Idempotent; does nothing when all is there.
set -euo pipefail

packages=(
    # build
    build-essential cmake ninja-build pkg-config g++ clang-format
    # libraries (README "Dependencies" says why each one is here)
    liburing-dev libmimalloc-dev libyaml-cpp-dev libnftables-dev libmnl-dev
    googletest libgtest-dev libgmock-dev libbenchmark-dev
    # the lab and its real peers
    iproute2 nftables conntrack procps python3 curl iperf3 socat netcat-openbsd nginx-light
    # peers for the performance comparison
    haproxy libnginx-mod-stream linux-perf valgrind
    # observability tests: promtool checks the /metrics output (tests/relay/test_metrics.py)
    prometheus
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages with a service (prometheus, nginx, haproxy) must not start it on the host: a
# policy-rc.d that refuses every start, in place only while we install (unless one exists).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
