#!/usr/bin/env python3
"""relay -u limits and endings, one worker:
- --max-flows 10: 20 new clients at once -> 10 flows, 10 shed (counted, no answer); after a
  second of silence a new client evicts the least recently used flow (counted evicted);
- --max-flows-per-client 3: a 4th port of 127.0.0.1 is shed while 127.0.0.2 still gets flows;
- an upstream port with nothing behind it: ICMP port unreachable ends the flow (icmp);
- a fixed upstream that is the relay itself: refused (dropped self), no flow loop."""
import socket
import time

import relayharness as h
import udpharness as u


def limits(ctx):
    family, host = h.V4
    srv = u.UdpServer(ctx, family=family, host=host, mode="echo")
    port = u.free_udp_port(family, host)
    r = ctx.relay(["-u", "--workers", "1", "--max-flows", "10", "--max-flows-per-client", "10",
                   "-L", host, port, host, srv.port], family=family).start()
    relay = (host, r.port)
    clients = [u.client(family, timeout=0.5) for _ in range(20)]
    for i, c in enumerate(clients):
        c.sendto(b"%d" % i, relay)
    answered = 0
    for c in clients:
        try:
            c.recvfrom(100)
            answered += 1
        except socket.timeout:
            pass
    st = u.udp_stats(r)
    h.check(answered == 10, f"{answered} clients answered, expected 10: {st}")
    h.check(st["flows_created"] == 10 and st["shed"] == 10 and st["dropped"].get("shed") == 10,
            f"expected 10 flows and 10 shed: {st}")
    time.sleep(1.3)  # every flow is now idle long enough to be evicted
    late = u.client(family, timeout=5)
    late.sendto(b"late", relay)
    h.check(late.recvfrom(100)[0] == b"late", "late client not answered")
    st = u.udp_stats(r)
    h.check(st["evicted"] == 1 and st["flows_active"] == 10, f"expected one eviction: {st}")
    for c in clients + [late]:
        c.close()
    h.check(r.stop() == 0, "SIGTERM with live flows should exit 0")
    srv.close()


def per_client(ctx):
    family, host = h.V4
    srv = u.UdpServer(ctx, family=family, host=host, mode="echo")
    port = u.free_udp_port(family, "0.0.0.0")
    r = ctx.relay(["-u", "--workers", "1", "--max-flows-per-client", "3", "-L", "0.0.0.0", port,
                   host, srv.port], family=family).start()
    relay = ("127.0.0.1", r.port)
    a = [u.client(family, host="127.0.0.1", timeout=0.5) for _ in range(4)]
    b = [u.client(family, host="127.0.0.2", timeout=2) for _ in range(2)]
    for c in a + b:
        c.sendto(b"hi", relay)
    ok_a = 0
    for c in a:
        try:
            c.recvfrom(100)
            ok_a += 1
        except socket.timeout:
            pass
    for c in b:
        h.check(c.recvfrom(100)[0] == b"hi", "127.0.0.2 client not answered")
    st = u.udp_stats(r)
    h.check(ok_a == 3 and st["shed"] == 1 and st["flows_active"] == 5,
            f"127.0.0.1 should get 3 flows (got {ok_a}), 1 shed, 5 flows in all: {st}")
    for c in a + b:
        c.close()
    h.check(r.stop() == 0, "SIGTERM with live flows should exit 0")
    srv.close()


def icmp_and_self(ctx):
    family, host = h.V4
    dead = u.free_udp_port(family, host)
    port = u.free_udp_port(family, host)
    r = ctx.relay(["-u", "--workers", "1", "-L", host, port, host, dead], family=family).start()
    c = u.client(family, timeout=0.3)
    c.sendto(b"anyone?", (host, r.port))
    st = u.wait_udp(r, lambda s: s["ended"].get("icmp") == 1, 10, "the flow ended by ICMP")
    h.check(st["flows_active"] == 0, f"flow should be gone: {st}")
    c.close()
    u.finish(r)
    port = u.free_udp_port(family, host)
    r = ctx.relay(["-u", "--workers", "1", "-L", host, port, host, port], family=family).start()
    c = u.client(family, timeout=0.3)
    c.sendto(b"loop?", (host, r.port))
    st = u.wait_udp(r, lambda s: s["dropped"].get("self", 0) >= 1, 10, "the self drop")
    h.check(st["dgrams_up"] == 0 and st["flows_created"] == 0,
            f"nothing may be relayed to the relay itself, and no flow made for it: {st}")
    c.close()
    h.check(r.stop() == 0, "SIGTERM with live flows should exit 0")


def test(ctx):
    limits(ctx)
    per_client(ctx)
    icmp_and_self(ctx)


if __name__ == "__main__":
    h.main(test)
