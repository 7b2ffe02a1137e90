#!/usr/bin/env python3
"""Connection churn (reliability L3, small): 5,000 short connections, 64 at a time, over 2
workers, so connection slots are reused many times while completions for their previous
owners may still be arriving. Each sends 1 KiB, half-closes and must read exactly its bytes
back then EOF; every 7th instead resets right after sending. No leak, exact counters."""
import os
import selectors
import socket
import time

import relayharness as h

N = 5000
PAR = 64
SIZE = 1024


def test(ctx):
    family, host = h.V4
    srv = h.EchoServer(ctx, family=family)
    r = ctx.relay(["--workers", 2, "-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    sel = selectors.DefaultSelector()
    started = done = resets = 0
    bad = []

    def start(i):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(r.addr())
        except BlockingIOError:
            pass
        c = {"i": i, "s": s, "out": os.urandom(SIZE), "sent": 0, "in": bytearray()}
        sel.register(s, selectors.EVENT_WRITE, c)

    def end(c, how):
        nonlocal done
        sel.unregister(c["s"])
        if how == "eof" and bytes(c["in"]) != c["out"]:
            bad.append((c["i"], "bytes differ", len(c["in"])))
        elif how not in ("eof", "rst"):
            bad.append((c["i"], how, len(c["in"])))
        if how != "rst":
            c["s"].close()
        done += 1
    deadline = time.monotonic() + 90
    while done < N and time.monotonic() < deadline:
        while started < N and started - done < PAR:
            start(started)
            started += 1
        for key, ev in sel.select(1.0):
            c, s = key.data, key.fileobj
            try:
                if ev & selectors.EVENT_WRITE:
                    c["sent"] += s.send(c["out"][c["sent"]:])
                    if c["sent"] == SIZE:
                        if c["i"] % 7 == 3:
                            h.rst_close(s)
                            resets += 1
                            end(c, "rst")
                            continue
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ, c)
                elif ev & selectors.EVENT_READ:
                    d = s.recv(65536)
                    if d:
                        c["in"] += d
                    else:
                        end(c, "eof")
            except BlockingIOError:
                pass
            except OSError as e:
                end(c, f"error {e}")
    h.check(done == N, f"only {done} of {N} connections finished in time")
    h.check(not bad, f"{len(bad)} connections failed, first: {bad[:3]}")
    h.wait_until(lambda: srv.active == 0, 20, "upstream connections to end")
    st = r.finish(timeout=30)
    if st:
        cb = st["total"]["closed_by"]
        acc = st["total"]["accepted"]
        # a client reset can beat the relay's accept (the kernel then drops it unaccepted)
        h.check(N - resets <= acc <= N, f"accepted={acc} for {N} connections of which {resets} reset")
        h.check(cb.get("normal", 0) == N - resets and cb.get("normal", 0) + cb.get("client_reset", 0) == acc,
                f"close causes {cb} for {N - resets} clean and {resets} reset connections")
        h.check(all(w["accepted"] > 0 for w in st["workers"].values()), f"a worker took nothing: {st['workers']}")
    h.log(f"{N} short connections ({resets} reset by the client), all exact")


if __name__ == "__main__":
    h.main(test)
