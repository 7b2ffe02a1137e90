#!/usr/bin/env bash
# Builds the libFuzzer target (its own build directory, clang, -DTP_FUZZ=ON: the normal g++
# build is untouched) and runs it for a fixed number of iterations with a fixed seed, seeded
# from config/examples, the golden rule sets and the kept crashers, inside a scratch network
# namespace (libnftables' check mode needs CAP_NET_ADMIN). 77 = skipped.
#   run_fuzz.sh SOURCE_DIR BUILD_DIR RUNS [extra cmake args...]
# By hand, for as long as one likes: BUILD_DIR/tests/fuzz/config_fuzz -max_len=8192 CORPUS_DIR
set -euo pipefail
src=$1 dir=$2 runs=$3
shift 3
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (a scratch network namespace for nft check)"; exit 77; }
command -v clang++ >/dev/null || { echo "SKIP: needs clang++ (tools/install-deps.sh)"; exit 77; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTP_FUZZ=ON -DTP_BUILD_BENCH=OFF "${launcher[@]}" "$@" >/dev/null
cmake --build "$dir" --target config_fuzz -j 2 >/dev/null
work=$(mktemp -d /tmp/tpfuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/artifacts"
# -seed: the same inputs every run, so a failure here reproduces; -runs: mutations after the
# seeds. A finding aborts with the input printed and saved under artifacts/.
if ! unshare --net "$dir/tests/fuzz/config_fuzz" -seed=1 -runs="$runs" -max_len=8192 -timeout=20 \
    -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
    "$work/corpus" "$src/config/examples" "$src/tests/config/golden" "$src/tests/fuzz/regressions"; then
    for f in "$work"/artifacts/*; do
        [ -e "$f" ] || continue
        echo "== kept input $f (add it to tests/fuzz/regressions/ once fixed):"
        od -c "$f" | head -40
    done
    exit 1
fi
echo "config_fuzz: $runs runs, every input rejected with a position or its batch accepted by nft check"
