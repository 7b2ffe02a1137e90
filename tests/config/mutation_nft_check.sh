#!/usr/bin/env bash
# The B2 oracle: every mutated rule set that tpengine accepts must produce a batch that
# libnftables' check mode accepts, inside a scratch network namespace. Needs root (else 77).
#   mutation_nft_check.sh TP_NFT_CHECK CONFIG_MUTATION_TEST
set -euo pipefail
tool=$1
mutate=$2
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
    echo "skip: needs root and iproute2" >&2
    exit 77
fi
ns="tpcm-$$-$RANDOM"
out=$(mktemp -d)
if ! ip netns add "$ns" 2>/dev/null; then
    rm -rf "$out"
    echo "skip: cannot create a network namespace" >&2
    exit 77
fi
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$out"' EXIT
TP_MUTATION_OUT=$out "$mutate" >/dev/null
shopt -s nullglob
files=("$out"/*.nft)
if [ ${#files[@]} -lt 20 ]; then
    echo "only ${#files[@]} distinct accepted batches; the mutation test changed?" >&2
    exit 1
fi
ip netns exec "$ns" "$tool" "${files[@]}" >/dev/null
echo "all ${#files[@]} distinct accepted mutations pass libnftables check mode"
