#!/usr/bin/env bash
# The systemd unit: `systemd-analyze verify` passes (with /usr/sbin/tpengine pointing at this
# build's binary, so the check that ExecStart= exists is real), it is Type=notify with the
# config check before start and before reload, and its exposure score is printed (README).
# A unit with a typo'd directive must fail verify: the check can fail.
# usage: unit.sh UNIT TPENGINE
set -euo pipefail
unit=$1 tpengine=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
work=$(mktemp -d /tmp/tp-unit.XXXXXX)
trap 'rm -rf "$work"' EXIT
sed "s#/usr/sbin/tpengine#$tpengine#g" "$unit" >"$work/tpengine.service"
systemd-analyze verify --man=no "$work/tpengine.service" 2>&1 | tee "$work/verify.txt"
if grep -q . "$work/verify.txt"; then
    echo "FAIL: systemd-analyze verify reported problems"
    exit 1
fi
mkdir -p "$work/bad"
sed 's/^ProtectHome=yes/ProtectHom=yes/' "$work/tpengine.service" >"$work/bad/tpengine.service"
if [ -z "$(systemd-analyze verify --man=no "$work/bad/tpengine.service" 2>&1)" ]; then
    echo "FAIL: verify does not notice an unknown directive: this test could not fail"
    exit 1
fi
for line in 'Type=notify' "ExecStartPre=$tpengine -c /etc/tpengine/proxy.yaml --check" \
    "ExecReload=$tpengine ctl reload" 'RuntimeDirectory=tpengine' \
    'Restart=on-failure' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
    'PrivateTmp=yes' 'AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW' \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX' 'SystemCallArchitectures=native'; do
    grep -qxF -- "$line" "$work/tpengine.service" || { echo "FAIL: the unit lacks: $line"; exit 1; }
done
grep -q '^SystemCallFilter=.*io_uring_setup io_uring_enter io_uring_register' "$work/tpengine.service" ||
    { echo "FAIL: the system-call filter does not allow io_uring"; exit 1; }
systemd-analyze security --offline=true "$work/tpengine.service" 2>/dev/null | tail -1
echo ok
