#!/usr/bin/env bash
# Every option that `tpengine --help`, `tpengine relay --help` and `tpbench --help` print is
# mentioned in the matching man page (tpengine.8 for both tpengine texts, tpbench.1).
# usage: man_options.sh TPENGINE TPBENCH MANDIR
set -euo pipefail
tpengine=$1 tpbench=$2 mandir=$3
for page in tpengine.8 tpbench.1 tpengine.yaml.5; do
    if [ ! -f "$mandir/$page.gz" ]; then
        echo "SKIP: $mandir/$page.gz not built (pandoc missing?)"
        exit 77
    fi
done

# The page as plain text: roff's \- and font escapes undone.
text() { zcat "$1" | sed -e 's/\\-/-/g' -e 's/\\f\[[A-Z]*\]//g' -e 's/\\f[BIRP]//g'; }
# Options in a help text: -x and --long-name tokens.
options() { grep -oE '(^|[][ ,(|])--?[A-Za-z0-9][A-Za-z0-9-]*' | sed -E 's/^[][ ,(|]//' | sort -u; }

missing=0
check() {  # check NAME HELP-TEXT PAGE-TEXT
    local n=0
    while read -r opt; do
        n=$((n + 1))
        if ! grep -qF -- "$opt" <<<"$3"; then
            echo "FAIL: $1 prints $opt, which its man page does not mention"
            missing=$((missing + 1))
        fi
    done < <(options <<<"$2")
    if [ "$n" -lt 3 ]; then
        echo "FAIL: $1: only $n options found in its --help (parsing broken?)"
        missing=$((missing + 1))
    fi
    echo "$1: $n options checked"
}
page8=$(text "$mandir/tpengine.8.gz")
check "tpengine --help" "$("$tpengine" --help)" "$page8"
check "tpengine relay --help" "$("$tpengine" relay --help)" "$page8"
check "tpbench --help" "$("$tpbench" --help 2>&1 || true)" "$(text "$mandir/tpbench.1.gz")"
# tpengine.yaml(5) is the configuration manual: every top-level key of docs/config.md's table.
page5=$(text "$mandir/tpengine.yaml.5.gz")
for key in workers drain_timeout listeners rules routing nftables user group; do
    grep -qE "(^| )$key( |$|:)" <<<"$page5" || { echo "FAIL: tpengine.yaml(5) lacks $key"; missing=$((missing + 1)); }
done
[ "$missing" -eq 0 ] && echo ok
exit $((missing > 0))
