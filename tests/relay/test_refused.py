#!/usr/bin/env python3
"""Upstream refused: each client sees a reset (ECONNRESET), never a clean EOF, and each is
counted as connect_failed (reliability F1, small)."""
import relayharness as h

N = 50


def run(ctx, family, host, n):
    dead = h.dead_port(family, host)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, dead], family=family,
                  upstream_ports=[dead]).start()
    hows = {}
    for _ in range(n):
        data, how = h.connect_and_read(r)
        hows[how] = hows.get(how, 0) + 1
        h.check(data == b"", f"client got {len(data)} bytes from a refused upstream")
    h.check(hows == {"reset": n}, f"{host}: {n} clients to a refused upstream ended with {hows}, expected all reset")
    st = r.finish(expect_accepted=n)
    if st:
        cf = st["total"]["closed_by"].get("connect_failed", 0)
        h.check(cf == n, f"connect_failed={cf}, expected {n}: {st['total']['closed_by']}")
    h.log(f"{host}: {n}/{n} refused upstream connections -> client ECONNRESET, connect_failed={n}")


def test(ctx):
    run(ctx, *h.V4, N)
    run(ctx, *h.V6, 10)


if __name__ == "__main__":
    h.main(test)
