#!/usr/bin/env python3
"""Backpressure (reliability F7, small): one side pushes 64 MiB while the other reads nothing
for 3 s. The relay must stop reading (the sender blocks with far less than 64 MiB sent) and its
memory must not grow with the backlog; after the reader resumes, every byte arrives exactly.
Both directions."""
import hashlib
import os
import threading
import time

import relayharness as h

TOTAL = 64 << 20
CHUNK = 256 << 10
MAX_IN_FLIGHT = 40 << 20  # socket buffers on the path (a few MiB each) + the relay's own buffers
MAX_RSS_GROWTH_KIB = 32 << 10


def pusher(sock, state):
    hsh = hashlib.sha256()
    chunk = os.urandom(CHUNK)
    try:
        while state["sent"] < TOTAL:
            sock.sendall(chunk)
            hsh.update(chunk)
            state["sent"] += CHUNK
        sock.shutdown(h.socket.SHUT_WR)
        state["sha"] = hsh.hexdigest()
    except Exception as e:  # noqa: BLE001
        state["error"] = e


def run(ctx, direction):
    family, host = h.V4
    state = {"sent": 0}

    def handler(c, idx):
        c.settimeout(60)
        if direction == "down":  # the server pushes, the client pauses
            pusher(c, state)
            return h.recv_to_end(c)
        time.sleep(3)  # the server pauses, the client pushes
        hsh = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            hsh.update(d)
            n += len(d)
        return (n, hsh.hexdigest())
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    rss0 = r.rss_kib() if not r.standin else 0
    s = r.connect(timeout=60)
    if direction == "up":
        t = threading.Thread(target=pusher, args=(s, state), daemon=True)
        t.start()
    time.sleep(3)
    in_flight = state["sent"]
    rss = r.rss_kib() if not r.standin else 0
    h.log(f"{direction}: after 3 s with the reader paused: {in_flight >> 20} MiB sent, relay RSS "
          f"{rss0 >> 10} -> {rss >> 10} MiB")
    h.check(in_flight < MAX_IN_FLIGHT, f"{direction}: the sender got {in_flight >> 20} MiB out while the reader "
            f"was paused: the relay does not apply backpressure")
    h.check(rss - rss0 < MAX_RSS_GROWTH_KIB, f"{direction}: relay RSS grew {(rss - rss0) >> 10} MiB while the "
            f"reader was paused")
    if direction == "down":
        hsh = hashlib.sha256()
        n = 0
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            hsh.update(d)
            n += len(d)
        s.close()
        srv.join(60)
        got = (n, hsh.hexdigest())
    else:
        t.join(60)
        s.close()
        srv.join(60)
        got = srv.results.get(0)
    srv.check()
    h.check("error" not in state, f"{direction}: sender failed: {state.get('error')}")
    h.check(got == (TOTAL, state.get("sha")), f"{direction}: reader got {got[0] if got else None} of {TOTAL} "
            f"bytes or different bytes")
    r.finish(expect_accepted=1)
    h.log(f"{direction}: {TOTAL >> 20} MiB byte-exact after the pause")


def test(ctx):
    run(ctx, "down")
    run(ctx, "up")


if __name__ == "__main__":
    h.main(test)
