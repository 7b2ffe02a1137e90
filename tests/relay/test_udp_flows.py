#!/usr/bin/env python3
"""relay -u with 1,000 client sockets at once: 1,000 flows, each answered, each with its own
upstream source port (one mapping per client address and port); the relay holds about one fd
per flow while they live; with --udp-idle-timeout 1s every flow expires, counted, and the fd
count returns to the baseline. A client that keeps talking survives the expiry of the others."""
import socket
import time

import relayharness as h
import udpharness as u

N = 1000


def test(ctx):
    family, host = h.V4
    srv = u.UdpServer(ctx, family=family, host=host, mode="echo")
    port = u.free_udp_port(family, host)
    r = ctx.relay(["-u", "--workers", "2", "--udp-idle-timeout", "1s", "-L", host, port, host,
                   srv.port], family=family).start()
    relay = (host, r.port)
    clients = [u.client(family, timeout=5) for _ in range(N)]
    for i, c in enumerate(clients):
        c.sendto(b"flow %d" % i, relay)
    for i, c in enumerate(clients):
        data, _ = c.recvfrom(100)
        h.check(data == b"flow %d" % i, f"client {i} got {data!r}")
    st = u.udp_stats(r)
    h.check(st["flows_created"] == N and st["flows_active"] == N, f"expected {N} live flows: {st}")
    h.check(len(srv.sources()) == N, f"upstream saw {len(srv.sources())} sources, expected {N}")
    fds = r.fd_count()
    h.check(fds >= r.baseline_fds + N, f"{fds} fds with {N} flows (baseline {r.baseline_fds})")
    h.log(f"{N} flows live, {fds} fds")
    # One client keeps its flow alive past the others' expiry; its mapping stays the same.
    keeper = clients[0]
    first_src = None
    for src, d in srv.seen:
        if d == b"flow 0":
            first_src = src
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        keeper.sendto(b"still here", relay)
        h.check(keeper.recvfrom(100)[0] == b"still here", "keeper lost its answer")
        time.sleep(0.2)
    st = u.wait_udp(r, lambda s: s["flows_active"] == 1, 15, "all but one flow expired")
    h.check(st["ended"].get("expired") == N - 1, f"expired should be {N - 1}: {st['ended']}")
    last_src = [src for src, d in srv.seen if d == b"still here"][-1]
    h.check(last_src == first_src, f"keeper's mapping changed: {first_src} -> {last_src}")
    for c in clients:
        c.close()
    end = u.finish(r)
    h.check(end["ended"].get("expired") == N, f"expired should be {N}: {end['ended']}")
    srv.close()


if __name__ == "__main__":
    h.main(test)
