#!/usr/bin/env bash
# Dependencies point one way: tools -> engine, config. engine/ and config/ meet only in
# config/plan.h (plain data). This fails when an include crosses that line.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
if grep -rnE '#include "config/' engine/ | grep -v '"config/plan.h"'; then
    echo "engine/ includes config/ beyond config/plan.h" >&2
    bad=1
fi
if grep -rnE '#include "(engine|tools)/' config/; then
    echo "config/ includes engine/ or tools/" >&2
    bad=1
fi
if grep -rnE '#include (<liburing|"liburing)' config/; then
    echo "config/ uses io_uring" >&2
    bad=1
fi
if grep -rnE 'yaml-cpp|<yaml' engine/; then
    echo "engine/ uses YAML" >&2
    bad=1
fi
if grep -rnE '#include "(engine|config)/' tools/tpbench/ 2>/dev/null; then
    echo "tpbench depends on the engine or config (it must measure from outside)" >&2
    bad=1
fi
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
