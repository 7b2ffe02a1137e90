#!/usr/bin/env python3
"""Slow readers cost bounded memory, and it comes back (issue 13 item 7). 20 clients stop
reading while their servers push as fast as the relay takes bytes. The relay's RSS must settle
at most 256 KiB per stalled reader above its warm idle figure (before: ~760 KiB, the provided
buffer ring's pages touched in turn and kept), and once the clients and servers are gone it must
come back within 10% of that idle figure (before: never). Both are waited for with generous
limits; the figures, not the time to reach them, are asserted. bench/memory/slow_reader.py
measures the full 50-reader case."""
import socket
import threading
import time

import relayharness as h

N = 20
CHUNK = b"y" * 65536


def test(ctx):
    family, host = h.V4
    stop = threading.Event()
    pushed = [0]

    def push(c, idx):
        c.settimeout(0.5)
        while not stop.is_set():
            try:
                pushed[0] += c.send(CHUNK)
            except socket.timeout:
                continue
            except OSError:
                return "closed"
        return "stopped"
    srv = h.ThreadServer(ctx, push, family=family)
    r = ctx.relay(["--workers", "2", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    for _ in range(16):  # warm up: each worker's first chunk of connection slots
        s = r.connect()
        h.recv_exact(s, 1000)
        s.close()
    h.wait_until(lambda: srv.active == 0, 20, "warm-up connections to end")
    r.wait_stats(lambda st: st["total"]["active"] == 0, 20, "warm-up connections closed")
    time.sleep(1.5)  # the idle trim of the warm-up's buffers
    idle = r.rss_kib()
    clients = []
    for _ in range(N):
        s = r.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        clients.append(s)
    last = [-1, time.monotonic()]

    def stalled_now():  # the servers' sends block: every buffer on the way is full
        if pushed[0] != last[0]:
            last[0], last[1] = pushed[0], time.monotonic()
        return time.monotonic() - last[1] > 1.0
    h.wait_until(stalled_now, 60, "the pushes to stall", interval=0.1)
    h.check(pushed[0] > N * 256 * 1024, f"only {pushed[0]} bytes pushed before the stall")
    h.wait_until(lambda: (r.rss_kib() - idle) / N <= 256, 30,
                 f"RSS to settle within {N} x 256 KiB of idle {idle} KiB (now {r.rss_kib()} KiB)",
                 interval=0.5)
    stalled = r.rss_kib()
    h.log(f"idle {idle} KiB; with {N} stalled readers {stalled} KiB "
          f"({(stalled - idle) / N:.0f} KiB each; {pushed[0] >> 20} MiB pushed)")
    for s in clients:
        s.close()
    stop.set()
    r.wait_stats(lambda st: st["total"]["active"] == 0, 30, "the stalled connections to close")
    h.wait_until(lambda: r.rss_kib() <= idle * 1.10, 30,
                 f"RSS back within 10% of idle {idle} KiB (now {r.rss_kib()} KiB)", interval=0.5)
    h.log(f"after: {r.rss_kib()} KiB")
    srv.join(connections=N + 16)
    r.finish()


if __name__ == "__main__":
    h.main(test)
