#!/usr/bin/env python3
"""1,000 concurrent connections: all are opened and reach the upstream (1,000 relayed at once),
then each sends 16 KiB of its own random bytes, half-closes, and must get exactly those bytes
back followed by EOF."""
import os
import selectors
import socket
import time

import relayharness as h

N = 1000
SIZE = 16 << 10


def test(ctx):
    family, host = h.V4
    srv = h.EchoServer(ctx, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(N):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(r.addr())
        except BlockingIOError:
            pass
        c = {"s": s, "out": os.urandom(SIZE), "sent": 0, "in": bytearray(), "done": False, "how": None}
        conns.append(c)
        if i % 100 == 99:
            time.sleep(0.02)  # the listen backlog is the relay's business; do not flood it needlessly
    # phase 1: every connection relayed at the same time
    h.wait_until(lambda: srv.accepted == N, 60, f"the upstream to hold {N} connections "
                 f"(has {srv.accepted})", interval=0.1)
    h.check(srv.active == N, f"upstream has {srv.active} live connections, expected {N}")
    if not r.standin:
        st = r.stats()
        r.check_balance(st)  # also with connections live
        h.check(st["total"]["active"] == N, f"relay active={st['total']['active']}, expected {N}")
    h.log(f"{N} connections relayed concurrently")
    # phase 2: exchange
    for c in conns:
        sel.register(c["s"], selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    left = N
    end = time.monotonic() + 60
    while left and time.monotonic() < end:
        for key, ev in sel.select(1.0):
            c = key.data
            s = c["s"]
            try:
                if ev & selectors.EVENT_WRITE and c["sent"] < SIZE:
                    c["sent"] += s.send(c["out"][c["sent"]:])
                    if c["sent"] == SIZE:
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ, c)
                if ev & selectors.EVENT_READ:
                    d = s.recv(65536)
                    if d:
                        c["in"] += d
                    else:
                        c["how"] = "eof"
            except BlockingIOError:
                pass
            except OSError as e:
                c["how"] = f"error {e}"
            if c["how"]:
                sel.unregister(s)
                s.close()
                left -= 1
    bad = [i for i, c in enumerate(conns) if c["how"] != "eof" or bytes(c["in"]) != c["out"]]
    for c in conns:
        if c["how"] is None:
            c["s"].close()
    h.check(not bad, f"{len(bad)} of {N} connections not byte-exact; first: #{bad[:1]} "
            f"how={conns[bad[0]]['how'] if bad else ''} got {len(conns[bad[0]]['in']) if bad else 0} bytes")
    h.check(not srv.errors, f"echo server errors: {srv.errors[:3]}")
    st = r.finish(expect_accepted=N, timeout=30)
    if st:
        t = st["total"]
        h.check(t["bytes_up"] == N * SIZE and t["bytes_down"] == N * SIZE,
                f"bytes_up={t['bytes_up']} bytes_down={t['bytes_down']}, expected {N * SIZE} each")
        h.check(t["closed_by"].get("normal") == N, f"closed_by: {t['closed_by']}")
    h.log(f"{N}/{N} byte-exact")


if __name__ == "__main__":
    h.main(test)
