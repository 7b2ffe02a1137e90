#!/usr/bin/env python3
"""Bulk transfers in parallel (reliability L1, small): 64 connections x 2 MiB each way, 16 at a
time, over 2 workers, so the relay's bulk path (large buffers or splice) runs for many
connections at once, mixed with half-closes. Every byte exact in both directions. Run twice:
as is, and with TPENGINE_NO_SPLICE=1 (the engine's copy-only path)."""
import hashlib
import os

import relayharness as h

N = 64
PAR = 16
SIZE = 2 << 20


def run(ctx, splice):
    family, host = h.V4
    srv = h.EchoServer(ctx, family=family)
    if not splice:  # the engine's switch for its copy-only path
        os.environ["TPENGINE_NO_SPLICE"] = "1"
    try:
        r = ctx.relay(["--workers", 2, "-L", host, h.free_port(family, host), host, srv.port], family=family,
                      upstream_ports=[srv.port]).start()
    finally:
        os.environ.pop("TPENGINE_NO_SPLICE", None)
    errors = []

    def one(i):
        try:
            data = os.urandom(SIZE)
            s = r.connect(timeout=60)
            t = h.send_in_thread(s, data, shut_wr=True)
            back, how = h.recv_to_end(s)
            t.join(60)
            s.close()
            if "ok" not in t.res:
                errors.append(f"#{i} send: {t.res}")
            elif how != "eof" or hashlib.sha256(back).digest() != hashlib.sha256(data).digest():
                errors.append(f"#{i}: {len(back)} of {SIZE} bytes back, ended with {how}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"#{i}: {type(e).__name__}: {e}")
    h.check(h.run_limited(N, one, PAR, 90) == 0, "some transfers hang")
    h.check(not errors, f"{len(errors)} of {N} transfers failed: {errors[:3]}")
    h.wait_until(lambda: srv.active == 0, 20, "upstream connections to end")
    st = r.finish(expect_accepted=N, timeout=30)
    if st:
        t = st["total"]
        h.check(t["bytes_up"] == N * SIZE and t["bytes_down"] == N * SIZE,
                f"bytes_up={t['bytes_up']} bytes_down={t['bytes_down']}, expected {N * SIZE} each")
        h.check(t["closed_by"] == {"normal": N}, f"closed_by {t['closed_by']}")
    h.log(f"{N} x {SIZE >> 20} MiB each way, byte-exact ({'splice' if splice else 'copy only'})")


def test(ctx):
    run(ctx, splice=True)
    run(ctx, splice=False)


if __name__ == "__main__":
    h.main(test)
