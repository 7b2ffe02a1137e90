#!/usr/bin/env python3
"""max-connections pause and resume: with --max-connections 10, 20 clients connect and send;
only 10 reach the upstream until some close, then the rest are served from the kernel backlog;
every client gets its bytes back."""
import os
import threading
import time

import relayharness as h

LIMIT = 10
N = 20


def echo(c, idx):
    c.settimeout(60)
    while True:  # echo as bytes come; the connection lives until the client closes it
        d = c.recv(65536)
        if not d:
            return "eof"
        c.sendall(d)


def test(ctx):
    family, host = h.V4
    srv = h.ThreadServer(ctx, echo, family=family)
    r = ctx.relay(["--max-connections", LIMIT, "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    clients = []
    for i in range(N):
        s = r.connect(timeout=60)  # over the limit, the kernel backlog completes the handshake
        c = {"s": s, "out": os.urandom(4096), "got": None, "closed": False}
        s.sendall(c["out"])
        clients.append(c)

    def reader(c):
        try:
            c["got"] = h.recv_exact(c["s"], len(c["out"]))
        except Exception as e:  # noqa: BLE001
            c["got"] = repr(e)
    threads = [threading.Thread(target=reader, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()

    def served():
        return [c for c in clients if c["got"] is not None]
    # the upstream keeps each connection until the client's bytes are echoed, and the relay keeps
    # it until the client closes: so exactly LIMIT are served, and no more while they stay open
    h.wait_until(lambda: len(served()) >= LIMIT, 20, f"{LIMIT} clients to be served")
    time.sleep(1.0)  # room for a wrong extra accept to show up
    h.check(srv.accepted == LIMIT, f"with --max-connections {LIMIT} the upstream saw {srv.accepted} connections "
            f"while {LIMIT} were open")
    h.check(len(served()) == LIMIT, f"{len(served())} clients served while {LIMIT} were open")
    if not r.standin:
        st = r.stats()
        r.check_balance(st)  # also with connections live
        h.check(st["total"]["accepted"] == LIMIT and st["total"]["active"] == LIMIT,
                f"over the limit the relay shows {st['total']}")
    h.log(f"paused at {LIMIT}: upstream saw {srv.accepted}")
    # close 5 served clients: 5 more must be accepted and served, still never more than LIMIT open
    for c in served()[:5]:
        c["s"].close()
        c["closed"] = True
    h.wait_until(lambda: srv.accepted == LIMIT + 5, 20, "5 more upstream connections after 5 closed")
    h.wait_until(lambda: len(served()) == LIMIT + 5, 20, "5 more clients served")
    time.sleep(0.5)
    h.check(srv.accepted == LIMIT + 5, f"upstream saw {srv.accepted}, expected {LIMIT + 5}")
    h.log(f"resumed: upstream saw {srv.accepted}")
    # close everything served, repeatedly, until all are served
    end = time.monotonic() + 30
    while time.monotonic() < end and any(not c["closed"] for c in clients):
        for c in served():
            if not c["closed"]:
                c["s"].close()
                c["closed"] = True
        time.sleep(0.05)
    h.check(all(c["closed"] for c in clients), f"only {len(served())} of {N} clients were ever served")
    for t in threads:
        t.join(5)
    bad = [i for i, c in enumerate(clients) if c["got"] != c["out"]]
    h.check(not bad, f"clients {bad} did not get their bytes back")
    h.check(srv.accepted == N, f"upstream saw {srv.accepted}, expected {N}")
    srv.join(connections=N)
    srv.check()
    st = r.finish(expect_accepted=N)
    if st:
        h.check(st["total"].get("accept_paused", 0) >= 1, f"accept_paused should count the pause: {st['total']}")
    h.log(f"all {N} served, never more than {LIMIT} at once")


if __name__ == "__main__":
    h.main(test)
