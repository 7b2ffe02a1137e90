"""--dry-run=nft prints only the nft batch, and nft's own check mode (`nft -c -f`) accepts it as
it is (what a firewall's include needs); --dry-run=routes prints only the policy-routing `ip`
commands, which run as a shell script; --dry-run prints the two one after the other. Other
values are usage errors (exit 2). Nothing is changed by any of them."""
import os
import re
import subprocess
import tempfile

import nslib

# Both kinds of chains, sets from both families, the local output chains.
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "golden")


def main():
    nslib.require_root()
    tp = os.environ["TPENGINE"]
    tmp = tempfile.mkdtemp(prefix="tpa-dryrun-")
    files = [nslib.write_config(os.path.join(tmp, "good.yaml")),
             os.path.join(GOLDEN, "capture-local.yaml"),
             os.path.join(GOLDEN, "redirect.yaml")]
    ns = nslib.Netns("dryrun")
    before = ns.snapshot()
    for cfg in files:
        name = os.path.basename(cfg)
        full = ns.run([tp, "-c", cfg, "--dry-run"], check=True).stdout
        nft = ns.run([tp, "-c", cfg, "--dry-run=nft"], check=True).stdout
        routes = ns.run([tp, "-c", cfg, "--dry-run=routes"], check=True).stdout
        if full != nft + routes:
            nslib.fail(f"{name}: --dry-run is not --dry-run=nft followed by --dry-run=routes")
        if not nft.startswith("add table inet ") or re.search(r"(?m)^ip ", nft):
            nslib.fail(f"{name}: --dry-run=nft holds more than the nft batch:\n{nft}")
        if any(not re.match(r"ip -[46] (rule|route) add ", l) for l in routes.splitlines()):
            nslib.fail(f"{name}: --dry-run=routes holds more than ip commands:\n{routes}")
        r = subprocess.run(ns.cmd(["nft", "-c", "-f", "-"]), input=nft, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            nslib.fail(f"{name}: nft -c -f rejects --dry-run=nft:\n{r.stderr}")
        nslib.expect_same(before, ns.snapshot(), f"{name}: --dry-run parts and nft -c")
    # The routes part is a script that makes the policy routing tpengine would.
    routes = ns.run([tp, "-c", files[0], "--dry-run=routes"], check=True).stdout
    if not routes:
        nslib.fail("a tproxy rule set should need policy routing")
    ns.sh(routes)
    if nslib.count_ours(ns.snapshot())[1:] != (1, 1, 1, 1):
        nslib.fail("--dry-run=routes run as a script:\n" + ns.snapshot())
    for bad in (["--dry-run=all"], ["--dry-run="], ["--check=nft"], ["--dry-run=nft", "--check"]):
        r = ns.run([tp, "-c", files[0]] + bad)
        if r.returncode != 2:
            nslib.fail(f"{bad}: expected exit 2, got {r.returncode}\n{r.stdout}{r.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
