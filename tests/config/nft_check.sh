#!/usr/bin/env bash
# Checks every golden nft batch with libnftables' check mode inside a scratch network
# namespace (never the host's ruleset). Needs root; exits 77 (skip) otherwise.
#   nft_check.sh TP_NFT_CHECK GOLDEN_DIR
set -euo pipefail
tool=$1
dir=$2
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2" >&2
    exit 77
fi
ns="tpcg-$$-$RANDOM"
if ! ip netns add "$ns" 2>/dev/null; then
    echo "skip: cannot create a network namespace" >&2
    exit 77
fi
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
shopt -s nullglob
files=("$dir"/*.nft)
if [ ${#files[@]} -lt 10 ]; then
    echo "expected at least 10 golden batches in $dir, found ${#files[@]}" >&2
    exit 1
fi
ip netns exec "$ns" "$tool" "${files[@]}"
# Check mode must really check: a broken batch has to fail.
bad=$(mktemp)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -f "$bad"' EXIT
printf 'table inet t {\n\tchain c {\n\t\ttype filter hook prerouting priority mangle;\n\t\ttproxy ip to :1\n\t}\n}\n' >"$bad"
if ip netns exec "$ns" "$tool" "$bad" >/dev/null 2>&1; then
    echo "check mode accepted a tproxy rule without an l4proto match" >&2
    exit 1
fi
# And nothing was committed.
if [ -n "$(ip netns exec "$ns" nft list ruleset)" ]; then
    echo "check mode left a ruleset behind" >&2
    exit 1
fi
echo "all ${#files[@]} golden batches pass libnftables check mode"
