#!/usr/bin/env python3
"""Connect timeout: the upstream is a listener whose accept queue is full, so the kernel drops
the relay's SYNs and its connect never completes. With --connect-timeout 1s every client gets
a reset (not EOF) and the cause counter is connect_timeout. No tight timing is asserted."""
import socket
import time

import relayharness as h

N = 5


def blackhole(ctx, family, host):
    """A listening socket with backlog 0 whose one queue slot is taken and never accepted."""
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect((host, port))
        except BlockingIOError:
            pass
        fillers.append(c)
        time.sleep(0.05)
    # prove the queue is full: a fresh connect does not complete
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect((host, port))
        full = False
    except (socket.timeout, BlockingIOError):
        full = True
    probe.close()
    h.check(full, "harness: could not fill the upstream's accept queue")
    ctx.keep = [ls] + fillers
    return port


def test(ctx):
    family, host = h.V4
    port = blackhole(ctx, family, host)
    r = ctx.relay(["--connect-timeout", "1s", "-L", host, h.free_port(family, host), host, port],
                  family=family, upstream_ports=[port]).start()
    socks = [r.connect(timeout=30) for _ in range(N)]
    t0 = time.monotonic()
    hows = {}
    for s in socks:
        s.settimeout(10)  # hang guard only
        data, how = h.recv_to_end(s)
        s.close()
        hows[how] = hows.get(how, 0) + 1
    took = time.monotonic() - t0
    h.check(hows == {"reset": N}, f"clients behind a connect that never completes ended with {hows}, "
            f"expected {N} resets")
    st = r.finish(expect_accepted=N)
    if st:
        ct = st["total"]["closed_by"].get("connect_timeout", 0)
        h.check(ct == N, f"connect_timeout={ct}, expected {N}: {st['total']['closed_by']}")
    h.log(f"{N} clients reset by the 1s connect timeout (all done {took:.2f}s after connecting)")


if __name__ == "__main__":
    h.main(test)
