#!/usr/bin/env bash
# The e2e harness itself (lib.sh): a test that fails must exit non-zero and say FAIL even when it
# registered cleanup of its own (at_exit), and that cleanup must run, on failure and on success.
# No lab is brought up: only the exit path is exercised.
set -uo pipefail
LIB=$(cd "$(dirname "$0")" && pwd)/lib.sh
work=$(mktemp -d /tmp/tpe2e-harness.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0
run() {  # NAME BODY: a test script sourcing lib.sh with an at_exit hook, then BODY
    cat >"$work/$1.sh" <<SCRIPT
source "$LIB"
E2E_NAME=$1 TMP=\$(mktemp -d "$work/tmp.XXXXXX") LAB_PREFIX=none\$\$
trap e2e_cleanup EXIT
at_exit 'touch "$work/$1.cleaned"'
$2
SCRIPT
    bash "$work/$1.sh" >"$work/$1.out" 2>&1
}
run dies 'die "on purpose"'
rc=$?
[ "$rc" -ne 0 ] || { echo "FAIL: a test that died exited 0"; fails=$((fails + 1)); }
grep -q "FAIL: dies" "$work/dies.out" || { echo "FAIL: a test that died did not say FAIL"; fails=$((fails + 1)); }
[ -e "$work/dies.cleaned" ] || { echo "FAIL: at_exit cleanup did not run after die"; fails=$((fails + 1)); }
run passes 'ok "fine"'
rc=$?
[ "$rc" -eq 0 ] || { echo "FAIL: a passing test exited $rc"; cat "$work/passes.out"; fails=$((fails + 1)); }
[ -e "$work/passes.cleaned" ] || { echo "FAIL: at_exit cleanup did not run on success"; fails=$((fails + 1)); }
run counted 'fail "a failed check"'
rc=$?
[ "$rc" -ne 0 ] || { echo "FAIL: a test with a failed check exited 0"; fails=$((fails + 1)); }
[ "$fails" -eq 0 ] && echo "PASS: harness_exit"
exit "$fails"
