"""An address list never widens a live rule: a rule whose sources come from an `@file` keeps
its narrow set when the file is truncated (empty, then only comments) or cannot be read (EIO)
and SIGHUP arrives: each reload is rejected with the file named, and the table stays exactly
as it was, still holding the one source network. Starting with such a file applies nothing."""
import os
import signal
import tempfile

import nslib


def config(path, list_name):
    with open(path, "w") as f:
        f.write(f"""workers: 1
routing: {{mark: 0x1, mask: 0x1, table: 100, priority: 100, bypass_mark: 0x2}}
nftables: {{table: {nslib.TABLE}}}
listeners:
  - name: web
    address: "::"
    port: 50080
rules:
  - name: lan-web
    interfaces: [lan0]
    sources: "@{list_name}"
    ports: [80]
    action: tproxy
    listener: web
""")


def main():
    nslib.require_root()
    tmp = tempfile.mkdtemp(prefix="tpa-lists-")
    cfg = os.path.join(tmp, "proxy.yaml")
    lst = os.path.join(tmp, "lan.txt")
    with open(lst, "w") as f:
        f.write("# the office\n192.0.2.0/24\n")
    config(cfg, "lan.txt")
    ns = nslib.Netns("lists")
    before = ns.snapshot()
    p = nslib.start(ns, cfg)
    table = nslib.nft_table(ns)
    if "ip saddr @src4-lan-web" not in table or "192.0.2.0/24" not in table:
        nslib.fail("the rule should match the listed sources only:\n" + table)

    for what, text in (("truncated", ""), ("only comments", "# nobody yet\n\n")):
        with open(lst, "w") as f:
            f.write(text)
        p.send_signal(signal.SIGHUP)
        lines = nslib.wait_for_line(p, "reload rejected")
        if not any(f"address list {lst} holds no address" in l for l in lines):
            nslib.fail(f"{what}: the rejection should name the list:\n" + "".join(lines))
        if nslib.nft_table(ns) != table:
            nslib.fail(f"{what}: the reload changed the table:\n" + nslib.nft_table(ns))

    # A read error: /proc/self/mem is a regular file whose read at offset 0 fails with EIO.
    config(cfg, "/proc/self/mem")
    p.send_signal(signal.SIGHUP)
    lines = nslib.wait_for_line(p, "reload rejected")
    if not any("cannot read address list /proc/self/mem: Input/output error" in l
               for l in lines):
        nslib.fail("EIO: the rejection should name the file and errno:\n" + "".join(lines))
    if nslib.nft_table(ns) != table:
        nslib.fail("EIO: the reload changed the table:\n" + nslib.nft_table(ns))
    if p.poll() is not None:
        nslib.fail("tpengine died on a rejected reload")

    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop")

    # Starting with an empty list applies nothing.
    config(cfg, "lan.txt")
    r = ns.run([os.environ["TPENGINE"], "-c", cfg])
    if r.returncode != 1 or "holds no address" not in r.stderr:
        nslib.fail(f"start with an empty list: exit {r.returncode}\n{r.stderr}")
    nslib.expect_same(before, ns.snapshot(), "start with an empty list")
    print("ok")


if __name__ == "__main__":
    main()
