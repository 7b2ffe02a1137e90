#!/usr/bin/env python3
"""Every metric the Grafana dashboard (docs/grafana/tpengine-dashboard.json) queries is one the
/metrics endpoint exports: checked against the renderer's golden output, which the
engine.metrics test keeps equal to the real renderer's."""
import json
import re
import sys


def main(dashboard, golden):
    with open(dashboard) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v.get("query", "") for v in dash.get("templating", {}).get("list", [])
              if isinstance(v.get("query"), str)]
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\btpengine_[a-z_]+", e))
    with open(golden) as f:
        exported = {line.split("{")[0].split(" ")[0] for line in f
                    if line.startswith("tpengine_")}
    missing = sorted(used - exported)
    if not used:
        print("FAIL: the dashboard queries no tpengine metric")
        return 1
    if missing:
        print("FAIL: the dashboard queries metrics /metrics does not export: " + ", ".join(missing))
        return 1
    print(f"PASS: {len(used)} metrics queried by {len(dash['panels'])} panels, all exported")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
