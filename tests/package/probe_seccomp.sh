#!/usr/bin/env bash
# io_uring refused by a seccomp filter (EPERM, as Docker's default profile does, or ENOSYS):
# `tpengine --check`, `tpengine -c` and `tpengine relay` fail with exit 1 and a message that
# names io_uring, the cause and the remedy, never a bare errno; and nothing is applied.
# usage: probe_seccomp.sh SECCOMP_EXEC TPENGINE CONFIG
set -euo pipefail
sx=$1 tp=$2 cfg=$3
fail() { echo "FAIL: $*"; exit 1; }
expect() {  # expect ERRNO NEEDLE ARGS...
    local e=$1 needle=$2
    shift 2
    local out rc=0
    # A namespace of its own: the shipped listener port may be taken on this host.
    out=$(unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$sx" "$e" "$tp" "$@" 2>&1) || rc=$?
    echo "--- $e: tpengine $*: exit $rc"
    echo "$out"
    [ "$rc" -eq 1 ] || fail "expected exit 1"
    grep -qF "io_uring is not available (io_uring_setup: " <<<"$out" || fail "no io_uring message"
    grep -qF -- "$needle" <<<"$out" || fail "the message does not say: $needle"
}
expect EPERM "a seccomp filter (a container's or a service manager's profile) forbids it" -c "$cfg" --check
expect ENOSYS "CONFIG_IO_URING" -c "$cfg" --check
expect EPERM "nothing applied" -c "$cfg" --no-rules
expect EPERM "allow io_uring_setup, io_uring_enter and io_uring_register" relay -L 127.0.0.1 47124 127.0.0.1 9
# Without the filter the same --check passes here: the failure above is the filter's doing.
unshare --net sh -c "ip link set lo up && '$tp' -c '$cfg' --check" || fail "--check without the filter"
echo ok
