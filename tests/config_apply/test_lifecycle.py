"""tpengine -c lifecycle in a private namespace. Modes (argv[1]):
  twice   applying twice (two starts, and 10 SIGHUPs with the same file) gives the same table
  stop    after SIGTERM (exit 0) nothing of ours is left: table, both families' rules and routes
  kill9   after kill -9 the state stays; 10 cycles of start + kill -9 leave exactly one table,
          one rule and one route per family; kill -9 again, then --cleanup removes it all (and exits 0 when
          there is nothing left to remove)
  second  a second instance with the same table in the same namespace is refused (exit 1,
          nothing touched), and so is --cleanup while the first runs"""
import os
import signal
import sys
import tempfile

import nslib


def main():
    nslib.require_root()
    mode = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="tpa-life-")
    cfg = nslib.write_config(os.path.join(tmp, "proxy.yaml"))
    ns = nslib.Netns(mode)
    before = ns.snapshot()

    if mode == "twice":
        p = nslib.start(ns, cfg)
        first = nslib.nft_table(ns)
        if "tproxy ip to :50080" not in first:
            nslib.fail("table not applied:\n" + first)
        for _ in range(10):
            p.send_signal(signal.SIGHUP)
            nslib.wait_for_line(p, "reloaded")
            if nslib.nft_table(ns) != first:
                nslib.fail("reload with the same file changed the table")
            if nslib.count_ours(ns.snapshot()) != (1, 1, 1, 1, 1):
                nslib.fail("reload with the same file: %r" % (nslib.count_ours(ns.snapshot()),))
        rc, out = nslib.stop(p)
        if rc != 0:
            nslib.fail(f"stop exit {rc}\n{out}")
        p = nslib.start(ns, cfg)
        second = nslib.nft_table(ns)
        if second != first:
            nslib.fail("second apply differs:\n" + nslib.diff(first, second))
        if nslib.count_ours(ns.snapshot()) != (1, 1, 1, 1, 1):
            nslib.fail("expected one table/rule/route each: %r" % (nslib.count_ours(ns.snapshot()),))
        nslib.stop(p)
    elif mode == "stop":
        p = nslib.start(ns, cfg)
        if nslib.count_ours(ns.snapshot()) != (1, 1, 1, 1, 1):
            nslib.fail("not applied: %r" % (nslib.count_ours(ns.snapshot()),))
        rc, out = nslib.stop(p)
        if rc != 0:
            nslib.fail(f"SIGTERM: exit {rc}\n{out}")
        nslib.expect_same(before, ns.snapshot(), "after a clean stop")
        # SIGINT behaves the same.
        p = nslib.start(ns, cfg)
        rc, out = nslib.stop(p, signal.SIGINT)
        if rc != 0:
            nslib.fail(f"SIGINT: exit {rc}\n{out}")
        nslib.expect_same(before, ns.snapshot(), "after SIGINT")
    elif mode == "kill9":
        p = nslib.start(ns, cfg)
        p.kill()
        p.wait()
        if nslib.count_ours(ns.snapshot()) != (1, 1, 1, 1, 1):
            nslib.fail("kill -9 should leave the state: %r" % (nslib.count_ours(ns.snapshot()),))
        for _ in range(10):
            p = nslib.start(ns, cfg)
            counts = nslib.count_ours(ns.snapshot())
            if counts != (1, 1, 1, 1, 1):
                nslib.fail("after kill -9 and a new start: %r" % (counts,))
            p.kill()
            p.wait()
        r = ns.run([os.environ["TPENGINE"], "-c", cfg, "--cleanup"])
        if r.returncode != 0 or "removed 1 nft table, 2 ip rules, 2 routes" not in r.stderr:
            nslib.fail(f"--cleanup: exit {r.returncode}\n{r.stderr}")
        nslib.expect_same(before, ns.snapshot(), "after kill -9 and --cleanup")
        r = ns.run([os.environ["TPENGINE"], "-c", cfg, "--cleanup"])
        if r.returncode != 0 or "nothing to clean up" not in r.stderr:
            nslib.fail(f"second --cleanup: exit {r.returncode}\n{r.stderr}")
    elif mode == "second":
        p = nslib.start(ns, cfg)
        running = ns.snapshot()
        other = nslib.write_config(os.path.join(tmp, "other.yaml"), port=50090)
        r = ns.run([os.environ["TPENGINE"], "-c", other])
        if r.returncode != 1 or "another tpengine (pid" not in r.stderr:
            nslib.fail(f"second instance: exit {r.returncode}\n{r.stderr}")
        nslib.expect_same(running, ns.snapshot(), "second instance refused")
        r = ns.run([os.environ["TPENGINE"], "-c", cfg, "--cleanup"])
        if r.returncode != 1 or "not stale" not in r.stderr:
            nslib.fail(f"--cleanup while running: exit {r.returncode}\n{r.stderr}")
        nslib.expect_same(running, ns.snapshot(), "--cleanup refused")
        if p.poll() is not None:
            nslib.fail("the first instance died")
        rc, out = nslib.stop(p)
        if rc != 0:
            nslib.fail(f"stop: exit {rc}\n{out}")
        nslib.expect_same(before, ns.snapshot(), "after stop")
    else:
        nslib.fail("unknown mode " + mode)
    print("ok")


if __name__ == "__main__":
    main()
