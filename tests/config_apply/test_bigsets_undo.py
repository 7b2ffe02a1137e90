"""A batch with a big set (5,000 elements: the nfnetlink path of nft_apply.cc, in three steps)
applied with apply_driver: it works; and when the kernel refuses the elements (two overlapping
entries) or the chains (a rule naming a set that does not exist), the namespace is left
byte-identical to before, the half-built table removed. A replace (reload) that changes the big
set fills it under a new name (dst4-big/1) that the rule then uses, the old set gone; when the
kernel refuses the new elements or the switch, the running table is left byte-identical and
the new set removed; a sweep after the switch still removes everything. A set whose
declaration changes (hash set of hosts -> interval set) is switched the same way, in place."""
import atexit
import os
import shutil
import tempfile

import nslib


def batch(elements, rule_set="dst4-big", decl="\t\tflags interval\n\t\tauto-merge\n"):
    lines = ",\n".join("\t\t\t" + e for e in elements)
    return f"""add table inet tpa
delete table inet tpa
table inet tpa {{
\tset dst4-big {{
\t\ttype ipv4_addr
{decl}\t\telements = {{
{lines}
\t\t}}
\t}}
\tchain pre {{
\t\ttype filter hook prerouting priority mangle + 1; policy accept;
\t\tmeta l4proto tcp ip daddr @{rule_set} return
\t}}
}}
"""


def hosts(n):
    base = (100 << 24) | (64 << 16)
    out = []
    for i in range(n):
        a = base + 4 * i
        out.append(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/32")
    return out


def main():
    nslib.require_root()
    driver = os.environ["APPLY_DRIVER"]
    tmp = tempfile.mkdtemp(prefix="tpa-bigundo-")
    atexit.register(shutil.rmtree, tmp, True)  # the generated lists are big
    cases = {
        "good": batch(hosts(5000)),
        # 100.64.0.0/24 holds 100.64.0.4/32: the kernel refuses the overlap.
        "overlap": batch(["100.64.0.0/24"] + hosts(5000)[1:]),
        "no-such-set": batch(hosts(5000), rule_set="nope"),
    }
    for name, text in cases.items():
        with open(os.path.join(tmp, name + ".nft"), "w") as f:
            f.write(text)
    ns = nslib.Netns("bigundo")
    ns.add_foreign_state()
    before = ns.snapshot()
    for bad in ("overlap", "no-such-set"):
        r = ns.run([driver, "apply", "--table", "tpa", "--batch",
                    os.path.join(tmp, bad + ".nft")])
        if r.returncode == 0:
            nslib.fail(f"{bad}: apply succeeded\n{r.stdout}{r.stderr}")
        why = [l for l in r.stderr.splitlines() if l.startswith("apply_driver:")]
        expected = "adding the elements of set dst4-big" if bad == "overlap" else "@nope"
        if expected not in r.stderr:
            nslib.fail(f"{bad}: refused for another reason than expected:\n{r.stderr}")
        print(f"{bad}: refused: {why[0] if why else r.stderr}")
        nslib.expect_same(before, ns.snapshot(), f"after the refused {bad} batch")
    r = ns.run([driver, "apply", "--table", "tpa", "--batch", os.path.join(tmp, "good.nft")])
    if r.returncode != 0:
        nslib.fail(f"good: {r.stdout}{r.stderr}")
    listed = ns.run(["nft", "list", "set", "inet", "tpa", "dst4-big"], check=True).stdout
    got = listed.count("100.64.")
    if got != 5000:
        nslib.fail(f"good: the set lists {got} addresses, 5000 expected")
    chain = ns.run(["nft", "list", "chain", "inet", "tpa", "pre"], check=True).stdout
    if "@dst4-big" not in chain:
        nslib.fail("good: the chain is missing:\n" + chain)

    # Replace (reload) with a changed big set: 100.64.0.0 gone, 100.64.0.1 in.
    changed = ["100.64.0.1/32"] + hosts(5000)[1:]
    cases = {
        "changed": batch(changed),
        # The new elements overlap: the kernel refuses them while filling the new set.
        "changed-overlap": batch(["100.64.0.0/24"] + changed[1:]),
        # The switch itself is refused (a rule names a set that does not exist).
        "changed-no-such-set": batch(changed, rule_set="nope"),
    }
    for name, text in cases.items():
        with open(os.path.join(tmp, name + ".nft"), "w") as f:
            f.write(text)
    good = os.path.join(tmp, "good.nft")
    def fresh_apply():
        ns.run([driver, "sweep", "--table", "tpa", "--batch", good], check=True)
        ns.run([driver, "apply", "--table", "tpa", "--batch", good], check=True)

    for bad, expected in (("changed-overlap", "adding the elements of set dst4-big/1"),
                          ("changed-no-such-set", "@nope")):
        fresh_apply()
        running = nslib.nft_table(ns, "tpa")
        r = ns.run([driver, "replace", "--table", "tpa", "--batch", good, "--next-batch",
                    os.path.join(tmp, bad + ".nft")])
        if r.returncode == 0 or expected not in r.stderr:
            nslib.fail(f"{bad}: replace should be refused ({expected}):\n{r.stdout}{r.stderr}")
        if nslib.nft_table(ns, "tpa") != running:
            nslib.fail(f"{bad}: the running table changed:\n" + nslib.nft_table(ns, "tpa"))
        print(f"{bad}: refused, the running table intact")
    fresh_apply()
    r = ns.run([driver, "replace", "--table", "tpa", "--batch", good, "--next-batch",
                os.path.join(tmp, "changed.nft")])
    if r.returncode != 0:
        nslib.fail(f"changed: {r.stdout}{r.stderr}")
    table = nslib.nft_table(ns, "tpa")
    if "set dst4-big {" in table or "ip daddr @dst4-big/1 return" not in table:
        nslib.fail("changed: the rule should use the new set, the old one gone:\n" + table)
    listed = ns.run(["nft", "list", "set", "inet", "tpa", "dst4-big/1"], check=True).stdout
    if listed.count("100.64.") != 5000 or "100.64.0.1" not in listed or "100.64.0.0," in listed:
        nslib.fail("changed: the new set does not hold the new list:\n" + listed[:400])
    r = ns.run([driver, "sweep", "--table", "tpa", "--batch", good])
    if r.returncode != 0:
        nslib.fail(f"sweep: {r.stdout}{r.stderr}")
    nslib.expect_same(before, ns.snapshot(), "after the sweep of a switched table")

    # A set whose declaration changes (a big list of hosts is a hash set of its size; a small
    # list an interval set) cannot be redeclared: it is filled anew too, still in place.
    hashed = os.path.join(tmp, "hashed.nft")
    with open(hashed, "w") as f:
        f.write(batch([h[:-3] for h in hosts(5000)], decl="\t\tsize 5000\n"))
    small = os.path.join(tmp, "small.nft")
    with open(small, "w") as f:
        f.write(batch(hosts(10)))
    ns.run([driver, "apply", "--table", "tpa", "--batch", hashed], check=True)
    r = ns.run([driver, "replace", "--table", "tpa", "--batch", hashed, "--next-batch", small])
    if r.returncode != 0 or "updated table inet tpa in place" not in r.stderr or \
            "replacing it" in r.stderr:
        nslib.fail(f"hash to interval: not updated in place:\n{r.stdout}{r.stderr}")
    table = nslib.nft_table(ns, "tpa")
    if "set dst4-big {" in table or "ip daddr @dst4-big/1 return" not in table or \
            "flags interval" not in table or table.count("100.64.") != 10:
        nslib.fail("hash to interval: the rule should use the new interval set:\n" + table)
    ns.run([driver, "sweep", "--table", "tpa", "--batch", small], check=True)
    nslib.expect_same(before, ns.snapshot(), "after the sweep of the redeclared set")
    print("PASS")


if __name__ == "__main__":
    main()
