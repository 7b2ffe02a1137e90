#!/usr/bin/env python3
"""Right after fd exhaustion ends, new connections work (issue 13 item 9). The relay runs with
RLIMIT_NOFILE 48: holders take every descriptor, then a flood of clients connects while accept
is paused and gives up (half of them close with a FIN, half with a RST) while still in the
listen backlog. The holders leave and at once 100 new clients each send a request and expect
its echo, 10 at a time. Every one of them must be served: the dead backlog entries must not
spend the descriptors (client + upstream socket) that the new clients need."""
import socket
import threading
import time

import relayharness as h

NOFILE = 48
HOLDERS = 40
FLOOD = 300
NEW = 100


def test(ctx):
    family, host = h.V4
    srv = h.EchoServer(ctx, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port], nofile=NOFILE).start()
    # Holders one at a time, each served (its echo back) before the next connects, until one is
    # not: a burst of connects would let the kernel accept them all at once, so that client
    # sockets rather than relayed pairs take the descriptors (slow builds, e.g. ASan, did that).
    holders = []
    for i in range(HOLDERS):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(r.addr())
        holders.append(s)
        s.sendall(b"h")
        s.settimeout(2)
        try:
            served = s.recv(1) == b"h"
        except socket.timeout:
            served = False
        s.settimeout(30)
        if not served:
            break
    # the served holders prove the relay is full (their echo comes back); the rest wait
    h.wait_until(lambda: r.stats()["total"]["active"] >= 8, 20, "holders to take the fds")
    h.wait_until(lambda: "paused" in r.stderr(), 20, "accept paused on EMFILE")
    flood = []
    for i in range(FLOOD):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(r.addr())  # completes in the kernel: the listen backlog holds it
        flood.append(s)
    for i, s in enumerate(flood):
        if i % 2:
            h.rst_close(s)
        else:
            s.close()
    for s in holders:
        s.close()
    res = {"ok": 0, "fail": []}
    lock = threading.Lock()

    def one(i):
        msg = b"new%04d" % i
        try:
            s = r.connect(timeout=30)
            s.sendall(msg)
            got = h.recv_exact(s, len(msg))
            s.close()
            ok = got == msg
            why = f"got {got!r}"
        except (OSError, h.TestFailure) as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        with lock:
            if ok:
                res["ok"] += 1
            else:
                res["fail"].append(f"client {i}: {why}")
    t0 = time.monotonic()
    left = h.run_limited(NEW, one, 10, 40)
    h.log(f"{res['ok']}/{NEW} new clients served in {time.monotonic() - t0:.1f}s")
    h.check(left == 0, f"{left} new clients still running")
    h.check(res["ok"] == NEW, f"{res['ok']}/{NEW} new clients served after the flood; "
            f"failures: {res['fail'][:5]}")
    st = r.finish(timeout=30)
    if st:
        h.log(f"closed_by: {st['total']['closed_by']}; accept_paused={st['total'].get('accept_paused')}")


if __name__ == "__main__":
    h.main(test)
