#!/usr/bin/env python3
"""Idle connections are cheap (reliability L2, small): 2,000 connections that each relayed a
few bytes and then went quiet cost the relay at most 40 KiB of RSS each (HAProxy: about
33 kB), because an idle connection holds no data buffer. All are then closed, nothing leaks."""
import socket
import time

import relayharness as h

N = 2000
MAX_KIB_PER_CONN = 40


def test(ctx):
    family, host = h.V4
    srv = h.EchoServer(ctx, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    # warm up: one connection through each code path, so first-use allocations are not counted
    for _ in range(20):
        s = r.connect()
        s.sendall(b"w")
        h.recv_exact(s, 1)
        s.close()
    r.wait_stats(lambda st: st["total"]["active"] == 0, 10, "warm-up connections to end")
    time.sleep(0.3)
    rss0 = r.rss_kib()
    socks = []
    for i in range(N):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(r.addr())
        socks.append(s)
        if i % 200 == 199:
            time.sleep(0.01)
    for s in socks:
        s.sendall(b"x")
    got = 0
    for s in socks:
        h.check(h.recv_exact(s, 1) == b"x", "echo through an idle-to-be connection")
        got += 1
    h.wait_until(lambda: srv.active == N, 30, f"{N} upstream connections")
    time.sleep(0.5)
    rss = r.rss_kib()
    per = (rss - rss0) / N
    h.log(f"{N} idle connections: relay RSS {rss0} -> {rss} KiB, {per:.1f} KiB per connection")
    h.check(per <= MAX_KIB_PER_CONN, f"{per:.1f} KiB of relay RSS per idle connection, budget {MAX_KIB_PER_CONN}")
    st = r.stats()
    r.check_balance(st)  # also with connections live
    h.check(st["total"]["active"] == N, f"active={st['total']['active']}, expected {N}")
    for s in socks:
        s.close()
    h.wait_until(lambda: srv.active == 0, 30, "upstream connections to end")
    r.finish(expect_accepted=N + 20, timeout=30)


if __name__ == "__main__":
    h.main(test)
