#!/usr/bin/env python3
"""Mixed load (reliability F4/L4 in small): 300 connections over 2 workers, 40 at a time.
Every 10th connection's client resets mid-stream, every 10th (offset 5) the server resets after
64 KiB, every 10th (offset 3) is a client half-close; the rest echo 32-256 KiB. Resets arrive
as resets, every other flow is byte-exact, the close causes add up exactly, no leak. SIGUSR1
arrives every 50 ms throughout."""
import hashlib
import os
import random
import signal
import socket
import threading

import relayharness as h

N = 300
PAR = 40


def kind(i):
    return {0: "client_rst", 5: "server_rst", 3: "half"}.get(i % 10, "echo")


def handler(c, idx):
    hdr = h.recv_exact(c, 5)
    k, n = hdr[:1], int.from_bytes(hdr[1:], "big")
    if k == b"S":  # server resets after 64 KiB
        c.sendall(os.urandom(64 << 10))
        h.rst_close(c)
        return "rst"
    if k == b"H":  # read to EOF, answer with the digest
        data, how = h.recv_to_end(c)
        c.sendall(hashlib.sha256(data).digest())
        return how
    got = 0
    while True:  # echo (or read until the client's reset)
        try:
            d = c.recv(1 << 16)
        except ConnectionResetError:
            return "reset"
        if not d:
            return "eof"
        c.sendall(d)
        got += len(d)


def client(r, i, rng):
    k = kind(i)
    s = r.connect(timeout=30)
    try:
        if k == "server_rst":
            s.sendall(b"S" + (0).to_bytes(4, "big"))
            data, how = h.recv_to_end(s)
            h.check(how == "reset", f"#{i} server reset seen by the client as {how} after {len(data)} bytes")
            return k
        if k == "half":
            data = os.urandom(rng.randint(1, 256 << 10))
            s.sendall(b"H" + len(data).to_bytes(4, "big") + data)
            s.shutdown(socket.SHUT_WR)
            ans, how = h.recv_to_end(s)
            h.check((ans, how) == (hashlib.sha256(data).digest(), "eof"), f"#{i} half-close answer {how}")
            return k
        data = os.urandom(rng.randint(32 << 10, 256 << 10))
        if k == "client_rst":  # send half, read its echo, then reset in the middle of the stream
            half = data[:len(data) // 2]
            s.sendall(b"E" + len(data).to_bytes(4, "big") + half)
            h.check(h.recv_exact(s, len(half)) == half, f"#{i} echo before the reset differs")
            h.rst_close(s)
            s = None
            return k
        t = h.send_in_thread(s, b"E" + len(data).to_bytes(4, "big") + data)
        back = h.recv_exact(s, len(data))
        t.join(30)
        h.check(back == data, f"#{i} echo differs")
        s.shutdown(socket.SHUT_WR)
        rest, how = h.recv_to_end(s)
        h.check((rest, how) == (b"", "eof"), f"#{i} end of echo: {how}")
        return k
    finally:
        if s is not None:
            s.close()


def test(ctx):
    family, host = h.V4
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["--workers", 2, "-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    rng = random.Random(7)
    errors = []
    counts = {}
    lock = threading.Lock()

    def one(i):
        try:
            k = client(r, i, random.Random(rng.random() + i))
            with lock:
                counts[k] = counts.get(k, 0) + 1
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"#{i} ({kind(i)}): {type(e).__name__}: {e}")
    # counters are read (SIGUSR1) all through the run: that must not disturb any flow
    stop = threading.Event()

    def poke():
        while not stop.wait(0.05):
            if not r.standin and r.alive():
                os.kill(r.pid(), signal.SIGUSR1)
    threading.Thread(target=poke, daemon=True).start()
    hung = h.run_limited(N, one, PAR, 60)
    h.check(hung == 0, f"{hung} flows hang")
    stop.set()
    h.check(not errors, f"{len(errors)} flows failed: {errors[:5]}")
    h.wait_until(lambda: srv.active == 0, 20, "server connections to end")
    h.check(not srv.errors, f"server errors: {srv.errors[:3]}")
    seen = sum(1 for v in srv.results.values() if v == "reset")
    h.check(seen == counts.get("client_rst", 0), f"the server saw {seen} resets, expected "
            f"{counts.get('client_rst', 0)} (client resets must arrive as resets, not EOF)")
    st = r.finish(expect_accepted=N, timeout=30)
    if st:
        cb = st["total"]["closed_by"]
        want = {"client_reset": counts.get("client_rst", 0), "upstream_reset": counts.get("server_rst", 0),
                "normal": counts.get("echo", 0) + counts.get("half", 0)}
        h.check(cb == want, f"close causes {cb}, expected {want}")
    h.log(f"{N} mixed flows ok: {counts}")


if __name__ == "__main__":
    h.main(test)
