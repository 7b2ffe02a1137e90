"""A failure at each start-up step leaves the namespace byte-identical (foreign state present)
and tpengine exits 1: listener port in use, no permission (no capabilities at all, or no
CAP_NET_ADMIN), a foreign default route in our route table (EEXIST after earlier steps), our
table name held by another process (nft fails after the routing went in), and an injected
failure at each step (TPENGINE_TEST_FAIL_AT)."""
import os
import subprocess
import tempfile
import time

import nslib

HOLD_PORT = """import socket, time
s = socket.socket(socket.AF_INET6)
s.bind(("::", 50080))
s.listen()
print("ready", flush=True)
time.sleep(100)
"""


def expect_failed_start(ns, argv, before, what, needle, env=None):
    r = ns.run(argv, env=env)
    if r.returncode != 1 or needle not in r.stderr:
        nslib.fail(f"{what}: expected exit 1 and {needle!r}, got {r.returncode}\n{r.stderr}")
    if "running (" in r.stderr:
        nslib.fail(f"{what}: claims to be running\n{r.stderr}")
    nslib.expect_same(before, ns.snapshot(), what)


def main():
    nslib.require_root()
    tp = os.environ["TPENGINE"]
    tmp = tempfile.mkdtemp(prefix="tpa-fail-")
    cfg = nslib.write_config(os.path.join(tmp, "proxy.yaml"))
    ns = nslib.Netns("fail")
    ns.add_foreign_state()
    before = ns.snapshot()
    run = [tp, "-c", cfg]

    # 1. The listener's port is taken: the start fails first, naming the listener and its
    #    address; nothing is applied.
    holder = ns.spawn(["python3", "-c", HOLD_PORT])
    nslib.wait_for_line(holder, "ready")
    expect_failed_start(ns, run, before, "port in use",
                        "listener web: cannot bind [::]:50080: Address already in use")
    holder.kill()
    holder.wait()

    # 2. No capabilities at all (IP_TRANSPARENT refused), then no CAP_NET_ADMIN only (the
    #    listeners come up, the first route is refused).
    expect_failed_start(ns, ["setpriv", "--inh-caps=-all", "--bounding-set=-all"] + run, before,
                        "no capabilities", "cannot start the listeners")
    expect_failed_start(ns, ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"] +
                        run, before, "no CAP_NET_ADMIN", "Operation not permitted")

    # 3. Someone's default route in our table (IPv6): routes go in, the v6 one fails, undone.
    ns.sh("ip -6 route add unreachable default table 100")
    conflict = ns.snapshot()
    expect_failed_start(ns, run, conflict, "route conflict", "File exists")
    ns.sh("ip -6 route del unreachable default table 100")

    # 4. Our table name held by another process (flags owner): routes and rules go in, the nft
    #    transaction is refused, everything is undone.
    owner = subprocess.Popen(ns.cmd(["nft", "-i"]), stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    ns.procs.append(owner)
    owner.stdin.write(f"add table inet {nslib.TABLE} {{ flags owner; }}\n")
    owner.stdin.flush()
    for _ in range(50):
        if f"table inet {nslib.TABLE}" in ns.sh("nft list tables").stdout:
            break
        time.sleep(0.1)
    held = ns.snapshot()
    expect_failed_start(ns, run + ["-v"], held, "table held by another process",
                        "undid 4 step(s)")
    owner.stdin.close()
    owner.wait(timeout=10)
    nslib.expect_same(before, ns.snapshot(), "after the owner exited")

    # 5. Injected failure at every step.
    for step in ("route4", "route6", "rule4", "rule6", "nft"):
        env = dict(os.environ, TPENGINE_TEST_FAIL_AT=step)
        expect_failed_start(ns, run, before, "injected at " + step, "injected failure", env=env)

    # And after all that, a normal start and stop still work and leave nothing.
    p = nslib.start(ns, cfg)
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"final stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "final start/stop")
    print("ok")


if __name__ == "__main__":
    main()
