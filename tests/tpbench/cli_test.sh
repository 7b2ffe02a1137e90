#!/usr/bin/env bash
# tpbench's command line: --help (alone or after a command) prints the usage on stdout and
# exits 0, --version prints the version and exits 0, usage errors exit 2 with the usage on stderr.
set -u
TPBENCH=$1
fails=0
expect() {  # CODE STREAM REGEX ARGS...
    local code=$1 stream=$2 re=$3 out err rc
    shift 3
    out=$("$TPBENCH" "$@" 2>/tmp/tpbench-cli-$$.err)
    rc=$?
    err=$(cat /tmp/tpbench-cli-$$.err)
    rm -f /tmp/tpbench-cli-$$.err
    local text=$out
    [ "$stream" = stderr ] && text=$err
    if [ "$rc" -ne "$code" ] || ! grep -qE "$re" <<<"$text"; then
        echo "FAIL: tpbench $*: exit $rc (expected $code), $stream should match /$re/"
        echo "stdout: $out"
        echo "stderr: $err"
        fails=$((fails + 1))
    else
        echo "ok:   tpbench $*: exit $rc"
    fi
}
expect 0 stdout '^usage:' --help
expect 0 stdout '^usage:' -h
expect 0 stdout '^usage:' rr --help
expect 0 stdout '^usage:' serve --listen 127.0.0.1:1 --help
expect 0 stdout '^tpbench [0-9]+\.[0-9]+' --version
expect 0 stdout '^tpbench [0-9]+\.[0-9]+' -V
expect 2 stderr '^usage:'
expect 2 stderr 'unknown option --bogus' rr --bogus 1
expect 2 stderr "unknown command 'nope'" nope
[ "$fails" -eq 0 ]
