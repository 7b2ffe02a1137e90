#!/usr/bin/env python3
"""Byte-exact relay of random payloads both ways, IPv4 and IPv6 (sha256 compared on both
ends), and the byte counters equal what went through. Also v4 clients to a v6 upstream and
the reverse."""
import socket

import relayharness as h

SIZES = [1, 1000, 65536 + 7, 1 << 20, 16 << 20]


def run_family(ctx, family, host):
    srv = h.ProtoServer(ctx, family=family)
    port = h.free_port(family, host)
    flag = "-6" if family == socket.AF_INET6 else "-4"
    r = ctx.relay([flag, "-L", host, port, host, srv.port], family=family, upstream_ports=[srv.port]).start()
    up = down = conns = 0
    for n in SIZES:
        for mode in ("E", "D", "U"):
            u, d = h.proto_client(r, mode, n, server=srv)
            up += u
            down += d
            conns += 1
    h.wait_until(lambda: srv.active == 0, 10, "server connections to end")
    srv.check()
    check_count = srv.accepted
    h.check(check_count == conns, f"upstream saw {check_count} connections, expected {conns}")
    st = r.finish(expect_accepted=conns)
    if st:
        t = st["total"]
        h.check(t["bytes_up"] == up, f"bytes_up={t['bytes_up']}, expected {up}")
        h.check(t["bytes_down"] == down, f"bytes_down={t['bytes_down']}, expected {down}")
        h.check(t["closed_by"].get("normal", 0) == conns, f"closed_by normal != {conns}: {t['closed_by']}")
    h.log(f"{host}: {conns} connections byte-exact, {up} bytes up, {down} down")


def cross_family(ctx, client, upstream):
    """A v4 client relayed to a v6 upstream, and the reverse."""
    (cf, ch), (uf, uh) = client, upstream
    srv = h.ProtoServer(ctx, family=uf)
    r = ctx.relay(["-L", ch, h.free_port(cf, ch), uh, srv.port], family=cf, upstream_ports=[srv.port]).start()
    for mode in ("E", "D", "U"):
        h.proto_client(r, mode, 1 << 20, server=srv)
    h.wait_until(lambda: srv.active == 0, 10, "server connections to end")
    srv.check()
    r.finish(expect_accepted=3)
    h.log(f"{ch} -> {uh}: byte-exact")


def test(ctx):
    run_family(ctx, *h.V4)
    run_family(ctx, *h.V6)
    cross_family(ctx, h.V4, h.V6)
    cross_family(ctx, h.V6, h.V4)


if __name__ == "__main__":
    h.main(test)
