#!/usr/bin/env python3
"""HOST `original` without NAT: the original destination of a direct connection is tpengine's
own listening address. It must be refused with a reset and counted self_connect, with zero
upstream connections (accepted stays at the number of clients: no loop). The same for a fixed
HOST:PORT that is the listener itself."""
import relayharness as h

N = 10


def run(ctx, family, host, target="original"):
    port = h.free_port(family, host)
    args = ["original"] if target == "original" else [host, port]  # HOST:PORT = the listener itself
    r = ctx.relay(["-L", host, port] + args, family=family, upstream_ports=[port]).start()
    hows = {}
    for _ in range(N):
        data, how = h.connect_and_read(r)
        hows[how] = hows.get(how, 0) + 1
    h.check(hows == {"reset": N}, f"{host}: direct connections to the listener with HOST original ended "
            f"with {hows}, expected {N} resets")
    st = r.finish(expect_accepted=N)  # exactly N: the relay never connected to itself
    if st:
        sc = st["total"]["closed_by"].get("self_connect", 0)
        h.check(sc == N, f"{host}: self_connect={sc}, expected {N}: {st['total']['closed_by']}")
    h.log(f"{host} ({target}): {N}/{N} self-connects reset, no loop")


def test(ctx):
    run(ctx, *h.V4)
    run(ctx, *h.V6)
    run(ctx, *h.V4, target="itself")


if __name__ == "__main__":
    h.main(test)
