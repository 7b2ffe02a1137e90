#!/usr/bin/env python3
"""A reset on one side becomes a reset on the other (ECONNRESET, not EOF), and the bytes the
relay had already received are delivered before it (Envoy #45267): with the reader active,
and with the reader paused so the bytes are still queued inside the relay when the RST comes."""
import os
import threading
import time

import relayharness as h

N = 1 << 20
N_QUEUED = 4 << 20  # with the reader paused, more than the socket buffers on the path take


def one(ctx, family, host, who_resets, reader_delay):
    payload = os.urandom(N_QUEUED if reader_delay else N)
    acked = []

    def handler(c, idx):
        if who_resets == "server":
            acked.append(h.send_then_rst(c, payload))
            return None
        time.sleep(reader_delay)
        data, how = h.recv_to_end(c)
        return (data, how)
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    s = r.connect()
    if who_resets == "client":
        acked.append(h.send_then_rst(s, payload))
        srv.join()
        srv.check()
        data, how = srv.results[0]
        side = "server"
    else:
        time.sleep(reader_delay)
        data, how = h.recv_to_end(s)
        s.close()
        srv.join()
        srv.check()
        side = "client"
    what = f"{who_resets} RST, reader delay {reader_delay}s, {host}"
    h.check(how == "reset", f"{what}: the {side} saw {how} after {len(data)} bytes, expected ECONNRESET")
    h.check(data == payload[:len(data)], f"{what}: the {side} got bytes that differ from what was sent")
    h.check(len(data) >= acked[0],
            f"{what}: the {side} got {len(data)} bytes, but {acked[0]} had reached the relay before the reset "
            f"(lost {acked[0] - len(data)})")
    if not reader_delay:
        h.check(acked[0] == len(payload), f"{what}: only {acked[0]} of {len(payload)} bytes were acknowledged")
    st = r.finish(expect_accepted=1)
    if st:
        cause = "client_reset" if who_resets == "client" else "upstream_reset"
        h.check(st["total"]["closed_by"].get(cause) == 1, f"{what}: closed_by {st['total']['closed_by']}, "
                f"expected {cause}=1")
    h.log(f"ok: {what}: {side} got {len(data)} bytes ({acked[0]} acknowledged before the RST), then ECONNRESET")


def reset_during_bulk(ctx, family, host, who, splice, n=10):
    """One side resets by closing with unread data while the other side is still pushing bulk
    (the relay has many buffers queued, or a splice in flight): the pusher's peer sees a reset,
    the relay frees everything (no stuck slot, no CLOSE_WAIT) and stops cleanly."""
    chunk = os.urandom(256 << 10)

    def push(sock):
        try:
            for _ in range(256):  # 64 MiB at most; the reset stops it long before
                sock.sendall(chunk)
            return "sent all"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except OSError as e:
            return f"error {e}"

    def handler(c, idx):
        if who == "server":  # read a little, then close with unread data: the kernel sends a RST
            h.recv_exact(c, 1 << 20)
            c.close()
            return "closed"
        return push(c)  # the client resets; the relay must reset us too
    srv = h.ThreadServer(ctx, handler, family=family)
    env_before = os.environ.get("TPENGINE_NO_SPLICE")
    if not splice:
        os.environ["TPENGINE_NO_SPLICE"] = "1"
    try:
        r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                      upstream_ports=[srv.port]).start()
    finally:
        if env_before is None:
            os.environ.pop("TPENGINE_NO_SPLICE", None)
    results = []

    def client():
        s = r.connect(timeout=30)
        try:
            if who == "server":
                pushed = []
                t = threading.Thread(target=lambda: pushed.append(push(s)), daemon=True)
                t.start()
                _, how = h.recv_to_end(s)
                t.join(30)
                # the socket error is reported once: to whichever of send() and recv() asks first
                # (recv() then sees EOF), so either one seeing the reset counts
                results.append("reset" if "reset" in (how, *pushed) else f"{how}/{pushed}")
            else:
                h.recv_exact(s, 1 << 20)
                s.close()  # unread data queued: RST
                s = None
                results.append("closed")
        finally:
            if s is not None:
                s.close()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    srv.join(60, connections=n)
    srv.check()
    what = f"{who} reset during bulk ({'splice' if splice else 'no splice'})"
    if who == "server":
        h.check(results == ["reset"] * n, f"{what}: clients saw {results}, expected {n} resets")
    else:
        got = sorted(srv.results.values())
        h.check(got == ["reset"] * n, f"{what}: the pushing servers saw {got}, expected {n} resets")
    st = r.finish(expect_accepted=n)
    if st:
        cause = "upstream_reset" if who == "server" else "client_reset"
        h.check(st["total"]["closed_by"] == {cause: n}, f"{what}: closed_by {st['total']['closed_by']}")
    h.log(f"ok: {what}: {n} connections reset through, no leak")


def test(ctx):
    cases = [(h.V4, "client", 0), (h.V4, "server", 0), (h.V4, "client", 1.0), (h.V4, "server", 1.0),
             (h.V6, "server", 0)]
    cases += [(h.V4, who, ("bulk", splice)) for who in ("server", "client") for splice in (True, False)]
    failures = []
    for (family, host), who, delay in cases:
        try:
            if isinstance(delay, tuple):
                reset_during_bulk(ctx, family, host, who, delay[1])
                continue
            one(ctx, family, host, who, delay)
        except h.TestFailure as e:  # run every case, report them all
            h.log(f"case failed: {e}")
            failures.append(str(e))
            for r in ctx.relays:
                r.kill()
    h.check(not failures, f"{len(failures)} of {len(cases)} cases failed: " + " | ".join(failures))


if __name__ == "__main__":
    h.main(test)
