"""Someone else's nft table, ip rules (one with our priority and mark but another table) and
routes (a `local default dev lo` in another table) stay byte-identical through start, reload,
stop, and kill -9 + --cleanup. --check names the shared priority."""
import os
import signal
import tempfile

import nslib


def main():
    nslib.require_root()
    tmp = tempfile.mkdtemp(prefix="tpa-foreign-")
    cfg = nslib.write_config(os.path.join(tmp, "proxy.yaml"))
    ns = nslib.Netns("foreign")
    ns.add_foreign_state()
    before = ns.snapshot()
    foreign = nslib.strip_ours(before)

    p = nslib.start(ns, cfg)
    s = ns.snapshot()
    if nslib.count_ours(s) != (1, 1, 1, 1, 1):
        nslib.fail("not applied: %r\n%s" % (nslib.count_ours(s), s))
    nslib.expect_same(foreign, nslib.strip_ours(s), "foreign state after start")

    nslib.write_config(cfg, ports=(80, 443, 8443))
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reloaded")
    if "8443" not in nslib.nft_table(ns):
        nslib.fail("reload did not replace the table")
    nslib.expect_same(foreign, nslib.strip_ours(ns.snapshot()), "foreign state after reload")

    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop")

    p = nslib.start(ns, cfg)
    p.kill()
    p.wait()
    nslib.expect_same(foreign, nslib.strip_ours(ns.snapshot()), "foreign state after kill -9")
    r = ns.run([os.environ["TPENGINE"], "-c", cfg, "--cleanup"])
    if r.returncode != 0:
        nslib.fail(f"--cleanup: exit {r.returncode}\n{r.stderr}")
    nslib.expect_same(before, ns.snapshot(), "after kill -9 and --cleanup")

    ns.sh("sysctl -qw net.ipv4.ip_forward=1")
    r = ns.run([os.environ["TPENGINE"], "-c", cfg, "--check"])
    if r.returncode != 1 or "routing.priority 100 is already used" not in r.stderr:
        nslib.fail(f"--check should name the shared priority: exit {r.returncode}\n{r.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
