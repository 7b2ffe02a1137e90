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
    # shipping (packaging/, tests/package): man pages, .deb dependencies and lint, unit check
    pandoc dpkg-dev lintian systemd util-linux
    # peers for the performance comparison
    haproxy libnginx-mod-stream linux-perf valgrind
    # observability tests: promtool checks the /metrics output (tests/relay/test_metrics.py)
    prometheus
    # upstream proxies (issue 10): SOCKS5 and HTTP CONNECT servers for tests, redsocks to compare
    dante-server tinyproxy redsocks
    # the libFuzzer target (tests/fuzz, ctest label fuzz): clang with its fuzzer/ASan runtimes
    clang libclang-rt-14-dev
    # UDP comparison (bench/macro/udp_compare.sh): a second, independent UDP load generator
    sockperf
    # the UDP end-to-end tests (issue 9): a DNS server on Z and on X, dig and dnsperf on Y
    # (dnsmasq-base is the binary alone: no service, nothing starts on the host)
    dnsmasq-base dnsutils dnsperf
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
# Servers (danted, tinyproxy, redsocks, nginx, haproxy) must not start on the host: tests run
# them inside their own network namespaces. policy-rc.d 101 tells invoke-rc.d not to start them.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
