"""The apply library on a hand-made KernelSetup (apply_driver): a failure at every step,
injected or real (route conflict, nft error, table held by another process), leaves the
namespace byte-identical; sweep removes ours and nothing foreign; replace moves the routing."""
import os
import subprocess
import tempfile
import time

import nslib

BATCH = """table inet tpa {}
delete table inet tpa
table inet tpa {
  chain divert {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 0x1 accept
  }
  chain pre {
    type filter hook prerouting priority mangle + 1; policy accept;
    fib daddr type local return
    meta l4proto tcp tproxy ip to :50080 meta mark set 0x1 accept
    meta l4proto tcp tproxy ip6 to :50080 meta mark set 0x1 accept
  }
}
"""


def main():
    nslib.require_root()
    driver = os.environ["APPLY_DRIVER"]
    tmp = tempfile.mkdtemp(prefix="tpa-journal-")
    good = os.path.join(tmp, "good.nft")
    bad = os.path.join(tmp, "bad.nft")
    with open(good, "w") as f:
        f.write(BATCH)
    with open(bad, "w") as f:
        f.write(BATCH.replace("fib daddr type local return",
                              "fib daddr type local return\n    ip daddr 10.0.0.1/33 return"))
    ns = nslib.Netns("journal")
    ns.add_foreign_state()
    base = ["--table", "tpa", "--batch", good]
    before = ns.snapshot()

    # Apply, then sweep: back to the foreign-only state.
    ns.run([driver, "apply"] + base, check=True)
    applied = ns.snapshot()
    if "table inet tpa" not in applied or applied.count("lookup 100") != 2:
        nslib.fail("apply did not install the table and both rules:\n" + applied)
    r = ns.run([driver, "sweep"] + base, check=True)
    if "1 nft table, 2 ip rules, 2 routes" not in r.stdout:
        nslib.fail("sweep summary: " + r.stdout)
    nslib.expect_same(before, ns.snapshot(), "apply + sweep")
    r = ns.run([driver, "sweep"] + base, check=True)
    if "nothing" not in r.stdout:
        nslib.fail("second sweep should find nothing: " + r.stdout)

    # Injected failure at each step.
    for step in ("route4", "route6", "rule4", "rule6", "nft"):
        r = ns.run([driver, "apply", "--fail-at", step] + base)
        if r.returncode != 1 or "injected failure at step " + step not in r.stderr:
            nslib.fail(f"fail-at {step}: rc {r.returncode}\n{r.stderr}")
        nslib.expect_same(before, ns.snapshot(), "failure at " + step)

    # Real failure: an nft error on line 11 of the batch, after routes and rules went in.
    r = ns.run([driver, "apply", "--table", "tpa", "--batch", bad])
    if r.returncode != 1 or "batch:11:" not in r.stderr or "    11 |" not in r.stderr:
        nslib.fail("nft error should name batch line 11:\n" + r.stderr)
    nslib.expect_same(before, ns.snapshot(), "nft batch error")

    # Real failure: someone else's default route in our table (IPv6): EEXIST at route6.
    ns.sh("ip -6 route add unreachable default table 100")
    before_conflict = ns.snapshot()
    r = ns.run([driver, "apply"] + base)
    if r.returncode != 1 or "File exists" not in r.stderr:
        nslib.fail("route conflict should fail with EEXIST:\n" + r.stderr)
    nslib.expect_same(before_conflict, ns.snapshot(), "route conflict")
    r = ns.run([driver, "sweep"] + base, check=True)
    nslib.expect_same(before_conflict, ns.snapshot(), "sweep must not remove a foreign route")
    ns.sh("ip -6 route del unreachable default table 100")

    # Real failure: the table name is held (flags owner) by another process.
    holder = subprocess.Popen(ns.cmd(["nft", "-i"]), stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    ns.procs.append(holder)
    holder.stdin.write("add table inet tpa { flags owner; }\n")
    holder.stdin.flush()
    for _ in range(50):
        if "table inet tpa" in ns.sh("nft list tables").stdout:
            break
        time.sleep(0.1)
    held = ns.snapshot()
    r = ns.run([driver, "apply"] + base)
    if r.returncode != 1 or "Operation not permitted" not in r.stderr:
        nslib.fail("owned table should fail with EPERM:\n" + r.stderr)
    nslib.expect_same(held, ns.snapshot(), "table held by another process")
    holder.stdin.close()
    holder.wait(timeout=10)
    nslib.expect_same(before, ns.snapshot(), "after the holder exited")

    # Tables above 255 only fit in FRA_TABLE / RTA_TABLE.
    ns.run([driver, "apply"] + base + ["--rt-table", "1000"], check=True)
    s = ns.snapshot()
    if s.count("fwmark 0x1/0x1 lookup 1000") != 2 or s.count("local default dev lo table 1000") != 2:
        nslib.fail("table 1000 not used:\n" + s)
    ns.run([driver, "sweep"] + base + ["--rt-table", "1000"], check=True)
    nslib.expect_same(before, ns.snapshot(), "sweep of table 1000")

    # Replace: routing moves from table 100 to 101, new rules in before the old ones go.
    ns.run([driver, "apply"] + base, check=True)
    ns.run([driver, "replace"] + base + ["--next-rt-table", "101"], check=True)
    s = ns.snapshot()
    if s.count("lookup 101") != 2 or "lookup 100" in s or "table 100" in s:
        nslib.fail("replace did not move the routing to table 101:\n" + s)
    ns.run([driver, "sweep"] + base + ["--rt-table", "101"], check=True)
    nslib.expect_same(before, ns.snapshot(), "sweep after replace")
    print("ok")


if __name__ == "__main__":
    main()
