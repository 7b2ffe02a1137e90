#!/usr/bin/env python3
"""relay -u, v4 and v6, with send batching (UDP_SEGMENT) on and off: bursts of same-size and
mixed-size datagrams from two clients, and from the upstream back to them, arrive byte-exact
and unmerged (count, sizes and contents per flow on the receiving side). The relay is stopped
(SIGSTOP) while a burst is queued so it reads the burst in one completion pass: with batching
on, gso_sends must then be > 0 (the test did exercise GSO), with TPENGINE_UDP_NO_GSO=1 zero.
As root, also in a network namespace whose loopback has a 1,500-byte MTU: a burst of 3,000-byte
replies cannot go out as one GSO send (segment above the MTU, EINVAL), so the relay sends them
one by one (fragmented), and every one still arrives.
GRO: senders that send with UDP_SEGMENT themselves (a client, then the upstream) hand the relay
several datagrams in one receive (UDP_GRO); they too arrive unmerged, one by one, byte-exact."""
import ctypes
import os
import signal
import socket
import subprocess
import time

import relayharness as h
import udpharness as u

# One flow's burst: runs of one size (batched), a shorter one ending a run, a 0-byte one (never
# batched), sizes above a 1,500 MTU and one near the 65,507 limit (alone: a batch stays below
# 65,000 bytes).
SIZES = ([1000] * 40 + [1200, 1200, 1200, 700, 1200, 1200] + [1, 1, 1, 0, 1, 1] + [1472] * 5
         + [8000, 8000, 3000] + [60000] + [100] * 70)


def burst():
    return [os.urandom(s) for s in SIZES]


def big_rcvbuf(sock):
    """Room for a whole burst even above net.core.rmem_max (root: SO_RCVBUFFORCE)."""
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)


def paused(r, fn):
    """Runs fn with the relay stopped, so what fn sends waits in socket buffers and the relay
    reads it in one go when it continues."""
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        fn()
        time.sleep(0.1)
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)


def recv_all(sock, n, what):
    got = []
    try:
        while len(got) < n:
            got.append(sock.recvfrom(70000)[0])
    except socket.timeout:
        pass
    h.check(len(got) == n, f"{what}: {len(got)} of {n} datagrams arrived (merged, split or lost?)")
    return got


def same(got, sent, what):
    h.check(sorted(map(len, got)) == sorted(map(len, sent)), f"{what}: sizes differ")
    h.check(sorted(got) == sorted(sent), f"{what}: contents differ")


def run(ctx, family, host, gso):
    if gso:
        os.environ.pop("TPENGINE_UDP_NO_GSO", None)
    else:
        os.environ["TPENGINE_UDP_NO_GSO"] = "1"
    try:
        srv = u.UdpServer(ctx, family=family, host=host, mode="sink")
        port = u.free_udp_port(family, host)
        r = ctx.relay(["-u", "--workers", "1", "--udp-idle-timeout", "1s", "-L", host, port, host,
                       srv.port], family=family).start()
    finally:
        os.environ.pop("TPENGINE_UDP_NO_GSO", None)
    relay = (host, r.port)
    clients = [u.client(family), u.client(family)]
    for sock in clients + [srv.sock]:
        big_rcvbuf(sock)
    # Up: both clients' bursts interleaved in runs, so batches also end on a change of flow.
    sent_up = [burst(), burst()]

    def send_up():
        for i in range(0, len(SIZES), 10):
            for c, msgs in zip(clients, sent_up):
                for m in msgs[i:i + 10]:
                    c.sendto(m, relay)
    paused(r, send_up)
    n_up = 2 * len(SIZES)
    h.wait_until(lambda: srv.count() >= n_up, 10, f"{n_up} datagrams at the upstream")
    time.sleep(0.2)  # anything extra (a split datagram) would show up now
    with srv.lock:
        seen = list(srv.seen)
    h.check(len(seen) == n_up, f"upstream saw {len(seen)} datagrams, expected {n_up}")
    sources = []
    for s, _ in seen:
        if s[:2] not in sources:
            sources.append(s[:2])
    h.check(len(sources) == 2, f"two clients should map to two upstream sources: {sources}")
    by_src = {s: [d for src, d in seen if src[:2] == s] for s in sources}
    # Which source is which client: the first datagram of each burst tells.
    for msgs in sent_up:
        match = [s for s in sources if msgs[0] in by_src[s]]
        h.check(len(match) == 1, "a client's first datagram should reach the upstream once")
        same(by_src[match[0]], msgs, f"up, client {sent_up.index(msgs)}")
    # Down: the upstream answers each mapping with a burst of its own.
    sent_down = {s: burst() for s in sources}

    def send_down():
        for s, msgs in sent_down.items():
            for m in msgs:
                srv.sock.sendto(m, s)
    paused(r, send_down)
    for i, c in enumerate(clients):
        src = [s for s in sources if sent_up[i][0] in by_src[s]][0]
        got = recv_all(c, len(SIZES), f"down, client {i}")
        same(got, sent_down[src], f"down, client {i}")
    n = 2 * len(SIZES)
    st = settled_stats(r, lambda s: s["dgrams_up"] >= n and s["dgrams_down"] >= n)
    h.check(st["dgrams_up"] == n and st["dgrams_down"] == n, f"dgrams_up/down should be {n}: {st}")
    if gso:
        h.check(st["gso_sends"] > 0 and st["gso_dgrams"] > st["gso_sends"],
                f"batching on: the bursts should have gone out in UDP_SEGMENT sends: {st}")
    else:
        h.check(st["gso_sends"] == 0, f"TPENGINE_UDP_NO_GSO=1: no batch expected: {st}")
    h.log(f"gso={gso}: gso_sends={st['gso_sends']} gso_dgrams={st['gso_dgrams']} of {2 * n}")
    flows = 2
    if gso:
        gro(r, srv, family, st)
        flows += 1
    for c in clients:
        c.close()
    end = u.finish(r)
    h.check(end["ended"].get("expired") == flows, f"all {flows} flows should expire: {end['ended']}")
    srv.close()


CLONE_NEWNET = 0x40000000
UDP_SEGMENT = 103


def settled_stats(r, ok, timeout=5):
    """The relay's udp counters once ok(counters) holds (or after `timeout`): a datagram is
    counted when its send completes, which the worker may reap a moment after the receiver
    already has it. The checks after this are exact."""
    end = time.monotonic() + timeout
    st = u.udp_stats(r)
    while not ok(st) and time.monotonic() < end:
        time.sleep(0.1)
        st = u.udp_stats(r)
    return st


def gso_send(sock, msgs, to):
    """One sendto of several datagrams: all of the first one's size, the last may be shorter."""
    sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, len(msgs[0]))
    sock.sendto(b"".join(msgs), to)
    sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 0)


def gro(r, srv, family, before):
    """On a running relay (counters `before`), from a new client: GSO sends both ways."""
    relay = (srv.host, r.port)
    c = u.client(family)
    big_rcvbuf(c)
    start = srv.count()
    # Up: 20 x 1,200 + 7 bytes, then 3 x 1,472 (the last one full-size), in two sends.
    ups = [[os.urandom(1200) for _ in range(20)] + [os.urandom(7)],
           [os.urandom(1472) for _ in range(3)]]
    for msgs in ups:
        gso_send(c, msgs, relay)
    n_up = sum(map(len, ups))
    h.wait_until(lambda: srv.count() >= start + n_up, 10, f"{n_up} datagrams at the upstream")
    time.sleep(0.2)
    with srv.lock:
        seen = list(srv.seen[start:])
    h.check(len(seen) == n_up, f"GRO up: upstream saw {len(seen)} datagrams, expected {n_up}")
    same([d for _, d in seen], [m for msgs in ups for m in msgs], "GRO up")
    mapping = seen[0][0]
    # Down: 64 x 1,000 (the most one GRO receive holds), then 5 x 900 + 1.
    downs = [[os.urandom(1000) for _ in range(64)], [os.urandom(900) for _ in range(5)] + [b"z"]]
    for msgs in downs:
        gso_send(srv.sock, msgs, mapping)
    n_down = sum(map(len, downs))
    got = recv_all(c, n_down, "GRO down")
    same(got, [m for msgs in downs for m in msgs], "GRO down")
    st = settled_stats(r, lambda s: s["dgrams_up"] - before["dgrams_up"] >= n_up
                       and s["dgrams_down"] - before["dgrams_down"] >= n_down)
    h.check(st["dgrams_up"] - before["dgrams_up"] == n_up
            and st["dgrams_down"] - before["dgrams_down"] == n_down,
            f"dgrams_up/down should have grown by {n_up}/{n_down}: {before} -> {st}")
    h.check(st["gro_recvs"] > before["gro_recvs"],
            f"the GSO sends should have reached the relay as GRO receives: {st}")
    h.log(f"GRO: gro_recvs={st['gro_recvs']} gso_sends={st['gso_sends'] - before['gso_sends']} "
          f"gso_dgrams={st['gso_dgrams'] - before['gso_dgrams']}")
    c.close()


def small_mtu(ctx):
    if os.geteuid() != 0:
        h.log("not root: the 1,500-byte MTU part is skipped")
        return
    name = f"tpgso{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        rc = libc.setns(fd, CLONE_NEWNET)  # this thread, and what it starts from now on
        os.close(fd)
        h.check(rc == 0, f"setns: errno {ctypes.get_errno()}")
        subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True, timeout=10)
        srv = u.UdpServer(ctx, mode="sink")
        port = u.free_udp_port()
        r = ctx.relay(["-u", "--workers", "1", "--udp-idle-timeout", "1s", "-L", "127.0.0.1", port,
                       "127.0.0.1", srv.port]).start()
        c = u.client()
        big_rcvbuf(c)
        c.sendto(b"hello", ("127.0.0.1", r.port))
        h.wait_until(lambda: srv.count() == 1, 10, "the first datagram at the upstream")
        mapping = srv.seen[0][0]
        sent = [os.urandom(3000) for _ in range(20)] + [os.urandom(1400) for _ in range(5)]

        def send_down():
            for m in sent:
                srv.sock.sendto(m, mapping)
        paused(r, send_down)
        got = recv_all(c, len(sent), "MTU 1500, down")
        same(got, sent, "MTU 1500, down")
        st = settled_stats(r, lambda s: s["dgrams_down"] >= len(sent))
        h.check(st["dgrams_down"] == len(sent), f"dgrams_down should be {len(sent)}: {st}")
        h.log(f"MTU 1500: {st}")
        c.close()
        u.finish(r)
        srv.close()
    finally:
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def test(ctx):
    small_mtu(ctx)
    run(ctx, *h.V4, True)
    run(ctx, *h.V6, True)
    run(ctx, *h.V4, False)


if __name__ == "__main__":
    h.main(test)
