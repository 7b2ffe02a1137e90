#!/usr/bin/env python3
"""Connect timeout: the upstream is a listener whose accept queue is full, so the kernel drops
the relay's SYNs and its connect never completes. With --connect-timeout 1s every client gets
a reset (not EOF) and the cause counter is connect_timeout. No tight timing is asserted.
Then a client that goes away (FIN or RST) while the upstream connect is still pending must
free everything at once, long before a 60s connect timeout (Envoy #42024)."""
import socket
import time

import relayharness as h

N = 5


BACKLOG = 4


def blackhole(ctx, family, host):
    """A listening socket whose accept queue is full and never accepted: new SYNs are dropped.
    Not backlog 0: a zero backlog makes the kernel answer every SYN with a syncookie, and a
    segment after the first one (a FIN right behind a request) then fails the cookie's sequence
    check and is reset, which no relay can avoid."""
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(BACKLOG)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(BACKLOG + 4):  # BACKLOG + 1 fill the queue; the rest wait with dropped SYNs
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


def timeout_resets(ctx):
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


def client_resets_during_connect(ctx, early_data):
    """A RST from the client while the upstream connect is pending frees everything at once,
    long before the 60s connect timeout (Envoy #42024), whether or not the client had sent early
    data first. (A FIN is not a reason to give up: the client may have half-closed after its
    request; see client_fin_during_connect.)"""
    family, host = h.V4
    port = blackhole(ctx, family, host)
    r = ctx.relay(["--connect-timeout", "60s", "-L", host, h.free_port(family, host), host, port],
                  family=family, upstream_ports=[port]).start()
    for i in range(3):
        s = r.connect()
        if early_data:
            s.sendall(b"request")
        # reset only once the relay has the connection (else the kernel may drop it unaccepted)
        r.wait_stats(lambda st: st["total"]["accepted"] == i + 1, 10, "the relay to accept")
        time.sleep(0.05)
        h.rst_close(s)
    st = r.finish(expect_accepted=3, timeout=15)
    if st:
        h.check(st["total"]["closed_by"].get("client_reset", 0) == 3,
                f"expected client_reset=3: {st['total']['closed_by']}")
    h.log(f"3 clients that reset during the upstream connect (early data: {early_data}) freed everything")


def client_fin_during_connect(ctx):
    """The client sends its request and half-closes before the upstream has accepted the
    relay's connect (its first SYN is dropped by a full accept queue); the request still arrives
    once the connect completes, and the reply reaches the client."""
    family, host = h.V4
    port = blackhole(ctx, family, host)
    ls = ctx.keep[0]
    r = ctx.relay(["--connect-timeout", "30s", "-L", host, h.free_port(family, host), host, port],
                  family=family, upstream_ports=[port]).start()
    s = r.connect()
    s.sendall(b"request")
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.5)  # the relay's SYN is being dropped now
    ls.settimeout(20)
    accepted = []
    while True:  # free the queue (fillers first), until the relay's connection shows up
        c, peer = ls.accept()
        c.settimeout(20)
        if peer[1] in [f.getsockname()[1] for f in ctx.keep[1:]]:
            c.close()
            continue
        break
    data, how = h.recv_to_end(c)
    h.check((data, how) == (b"request", "eof"), f"upstream got {data!r} ({how}) after a late connect")
    c.sendall(b"reply")
    c.close()
    got, how = h.recv_to_end(s)
    s.close()
    h.check((got, how) == (b"reply", "eof"), f"client got {got!r} ({how})")
    r.finish(expect_accepted=1)
    h.log("request + FIN sent before the upstream connect completed: delivered, reply received")


def test(ctx):
    parts = [("connect timeout resets", lambda: timeout_resets(ctx)),
             ("client RST during connect", lambda: client_resets_during_connect(ctx, False)),
             ("client RST after early data during connect", lambda: client_resets_during_connect(ctx, True)),
             ("client request+FIN before the connect completes", lambda: client_fin_during_connect(ctx))]
    failures = []
    for name, fn in parts:
        try:
            fn()
        except h.TestFailure as e:  # run every part, report them all
            h.log(f"part failed: {name}: {e}")
            failures.append(f"{name}: {str(e)[:400]}")
            for r in ctx.relays:
                r.kill()
    h.check(not failures, f"{len(failures)} of {len(parts)} parts failed: " + " | ".join(failures))


if __name__ == "__main__":
    h.main(test)
