#!/usr/bin/env python3
"""relay -u, v4 and v6: datagrams of 1, 1,472, 8,000 (fragmented on a 1,500 MTU, not on lo)
and 65,507 bytes arrive byte-exact both ways; a burst of 200 datagrams of distinct sizes arrives
as 200 datagrams of those sizes (never merged or split); replies come from the relay's address;
counters match; a datagram above --max-datagram is dropped and counted; the fd count returns to
the baseline when the flows expire; SIGTERM exits 0."""
import os
import socket
import time

import relayharness as h
import udpharness as u


def run(ctx, family, host):
    srv = u.UdpServer(ctx, family=family, host=host, mode="echo")
    port = u.free_udp_port(family, host)
    r = ctx.relay(["-u", "--workers", "2", "--udp-idle-timeout", "1s", "--max-datagram", "60000",
                   "-L", host, port, host, srv.port], family=family).start()
    relay = (host, r.port)
    c = u.client(family)
    sizes = [1, 1472, 8000, 60000]
    for n in sizes:
        msg = os.urandom(n)
        c.sendto(msg, relay)
        data, src = c.recvfrom(70000)
        h.check(data == msg, f"{n}-byte datagram: got {len(data)} bytes back, content equal: {data == msg}")
        h.check(src[:2] == relay, f"reply came from {src}, expected the relay {relay}")
    # Above the limit: dropped, counted, nothing relayed.
    c.sendto(b"x" * 60001, relay)
    # A burst, not waiting for answers: each datagram keeps its size.
    c2 = u.client(family, timeout=5)
    burst = [bytes([i % 251]) * (1 + i * 7) for i in range(200)]
    for m in burst:
        c2.sendto(m, relay)
        time.sleep(0.0005)  # stay well inside socket buffers: loss is not under test
    got = []
    try:
        while len(got) < len(burst):
            got.append(c2.recvfrom(70000)[0])
    except socket.timeout:
        pass
    h.check(sorted(got) == sorted(burst),
            f"counters {u.udp_stats(r)}; burst: {len(got)} of {len(burst)} datagrams came back, sizes equal: "
            f"{sorted(map(len, got)) == sorted(map(len, burst))}")
    up = [d for s, d in srv.seen]
    h.check(len(up) == len(sizes) + len(burst),
            f"upstream saw {len(up)} datagrams, expected {len(sizes) + len(burst)} (merged/split/extra?)")
    h.check(len(srv.sources()) == 2, f"two client sockets should map to two upstream sources: {srv.sources()}")
    st = u.udp_stats(r)
    n = len(sizes) + len(burst)
    h.check(st["dgrams_up"] == n and st["dgrams_down"] == n,
            f"dgrams_up/down should be {n}: {st}")
    h.check(st["dropped"].get("oversize") == 1, f"oversize drop should be 1: {st['dropped']}")
    h.check(st["flows_created"] == 2, f"flows_created should be 2: {st}")
    c.close()
    c2.close()
    end = u.finish(r)
    h.check(end["ended"].get("expired") == 2, f"both flows should expire: {end['ended']}")
    srv.close()


def usage(ctx):
    """-u with HOST original needs -t: refused with a message, exit 2, nothing started."""
    import subprocess
    p = subprocess.run([ctx.tpengine, "relay", "-u", "5000", "original"], capture_output=True,
                       text=True, timeout=10)
    h.check(p.returncode == 2 and "needs -t" in p.stderr, f"relay -u original: rc {p.returncode}, {p.stderr!r}")
    p = subprocess.run([ctx.tpengine, "relay", "-u", "--max-datagram", "65508", "5000", "127.0.0.1"],
                       capture_output=True, text=True, timeout=10)
    h.check(p.returncode == 2, f"--max-datagram 65508: rc {p.returncode}, {p.stderr!r}")


def test(ctx):
    usage(ctx)
    run(ctx, *h.V4)
    run(ctx, *h.V6)


if __name__ == "__main__":
    h.main(test)
