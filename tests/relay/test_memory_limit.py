#!/usr/bin/env python3
"""Shed load before the OOM killer (issue 13 item 8). The relay runs alone in a child memory
cgroup limited to 32 MiB (v2 memory.max or v1 memory.limit_in_bytes, created under the test's
own cgroup and removed after; exit 77 = skipped when that is not possible). 9,000 clients
connect and send a request while an echo server answers each. Before, the kernel OOM-killed the
relay at about 4,800 connections. Now: the relay is alive at the end, every connection it
accepted is relayed (its echo comes back; the relay's active count equals the clients served),
the rest are waiting in the listen queue or refused by the kernel (never an EOF from the relay),
and the counters say accepting paused at the limit."""
import os
import selectors
import socket
import sys
import time

import relayharness as h

LIMIT = 32 << 20
N = 9000


def own_memory_cgroup():
    """(directory, v2?) of this process's memory cgroup, or None."""
    v1 = v2 = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            num, ctrl, path = line.rstrip("\n").split(":", 2)
            if num == "0" and ctrl == "":
                v2 = path
            elif "memory" in ctrl.split(","):
                v1 = path
    if v2 is not None and os.path.exists(f"/sys/fs/cgroup{v2}/memory.current"):
        return f"/sys/fs/cgroup{v2}".rstrip("/"), True
    if v1 is not None and os.path.exists(f"/sys/fs/cgroup/memory{v1}/memory.usage_in_bytes"):
        return f"/sys/fs/cgroup/memory{v1}".rstrip("/"), False
    return None


def make_child():
    """A child memory cgroup limited to LIMIT, or None (skip)."""
    own = own_memory_cgroup()
    if own is None or os.geteuid() != 0:
        return None
    parent, v2 = own
    child = f"{parent}/tpengine-memtest-{os.getpid()}"
    try:
        if v2:
            with open(f"{parent}/cgroup.subtree_control") as f:
                if "memory" not in f.read().split():
                    return None  # enabling it would change the parent: not ours to do
        os.mkdir(child)
        with open(f"{child}/{'memory.max' if v2 else 'memory.limit_in_bytes'}", "w") as f:
            f.write(str(LIMIT))
        if v2:
            with open(f"{child}/memory.swap.max", "w") as f:
                f.write("0")
    except OSError as e:
        h.log(f"no child memory cgroup: {e}")
        if os.path.isdir(child):
            os.rmdir(child)
        return None
    return child


def oom_killed(child):
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(f"{child}/{name}") as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill" and int(v) > 0:
                        return True
        except OSError:
            pass
    return False


def test_in(ctx, child):
    family, host = h.V4
    srv = h.EchoServer(ctx, family=family, backlog=16384)
    r = ctx.relay(["--workers", "2", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port],
                  cgroup_procs=f"{child}/cgroup.procs").start()
    clients = []
    how = {"connected": 0, "refused": 0, "timeout": 0}
    for i in range(N):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(r.addr())
            s.sendall(b"%08d" % i)
            clients.append((i, s))
            how["connected"] += 1
        except ConnectionRefusedError:
            how["refused"] += 1
            s.close()
        except (socket.timeout, BlockingIOError):
            how["timeout"] += 1  # the listen queue is full: the kernel drops the SYN
            s.close()
        except ConnectionResetError:
            how["refused"] += 1
            s.close()
        if i % 1000 == 999:
            h.check(r.alive(), f"tpengine died at {i + 1} connections (OOM kill: {oom_killed(child)})")
    h.log(f"ramp of {N}: {how}")
    # Collect echoes for a while: served, reset (refused), or still waiting.
    served, reset, eof = 0, 0, 0
    pending = {s.fileno(): (i, s) for i, s in clients}
    sel = selectors.DefaultSelector()  # epoll: fds above 1024
    for _, s in clients:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    got = {}
    end = time.monotonic() + 15
    while pending and time.monotonic() < end:
        events = sel.select(0.5)
        for key, _ in events:
            i, s = pending[key.fd]
            try:
                d = s.recv(64)
            except ConnectionResetError:
                reset += 1
            except BlockingIOError:
                continue
            else:
                if d:
                    got[key.fd] = got.get(key.fd, b"") + d
                    if len(got[key.fd]) < 8:
                        continue
                    h.check(got[key.fd] == b"%08d" % i, f"client {i} got {got[key.fd]!r}")
                    served += 1
                else:
                    eof += 1
            sel.unregister(s)
            del pending[key.fd]
        if not events and served > 0:
            break  # nothing moved for 0.5 s: the rest wait while the relay is at its limit
    waiting = len(pending)
    h.check(r.alive(), f"tpengine died (OOM kill: {oom_killed(child)}):\n{r.output()[-2000:]}")
    h.check(not oom_killed(child), "the OOM killer acted in the relay's cgroup")
    st = r.stats()
    t = st["total"]
    h.log(f"served {served}, reset {reset}, eof {eof}, waiting {waiting}; relay: accepted "
          f"{t['accepted']} active {t['active']} mem_paused {t.get('mem_paused', 0)} "
          f"mem_refused {t.get('mem_refused', 0)}")
    h.check(eof == 0, f"{eof} clients got an EOF without their echo")
    h.check(served > 0, "no client served")
    h.check(t["active"] == served and t["accepted"] == served,
            f"every accepted connection must be relayed: accepted {t['accepted']}, "
            f"active {t['active']}, served {served}")
    h.check(t.get("mem_paused", 0) >= 1, f"no memory pause counted: {t}")
    h.check(served + reset + waiting + how["refused"] + how["timeout"] == N, "clients unaccounted")
    for _, s in clients:
        s.close()
    r.wait_stats(lambda s2: s2["total"]["active"] == 0, 60, "connections to close")
    r.finish(timeout=60)


def sanitized():
    """An ASan build: its shadow memory, not the relay's own, would fill the 32 MiB cgroup."""
    i = sys.argv.index("--tpengine") + 1 if "--tpengine" in sys.argv else 0
    if not 0 < i < len(sys.argv):
        return False
    with open(sys.argv[i], "rb") as f:
        return b"__asan_init" in f.read()


def main():
    if sanitized():
        print("SKIP test_memory_limit.py: an ASan build (its shadow memory counts in the "
              "cgroup); the release build runs this test", flush=True)
        sys.exit(77)
    child = make_child()
    if child is None:
        print("SKIP test_memory_limit.py: no writable memory cgroup (needs root, cgroup v1 or v2 "
              "with the memory controller)", flush=True)
        sys.exit(77)
    try:
        h.main(lambda ctx: test_in(ctx, child), time_limit=170)
    finally:
        for _ in range(50):
            try:
                os.rmdir(child)
                break
            except OSError:
                time.sleep(0.1)


if __name__ == "__main__":
    main()
