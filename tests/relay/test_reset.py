#!/usr/bin/env python3
"""A reset on one side becomes a reset on the other (ECONNRESET, not EOF), and the bytes the
relay had already received are delivered before it (Envoy #45267): with the reader active,
and with the reader paused so the bytes are still queued inside the relay when the RST comes."""
import os
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


def test(ctx):
    cases = [(h.V4, "client", 0), (h.V4, "server", 0), (h.V4, "client", 1.0), (h.V4, "server", 1.0),
             (h.V6, "server", 0)]
    failures = []
    for (family, host), who, delay in cases:
        try:
            one(ctx, family, host, who, delay)
        except h.TestFailure as e:  # run every case, report them all
            h.log(f"case failed: {e}")
            failures.append(str(e))
            for r in ctx.relays:
                r.kill()
    h.check(not failures, f"{len(failures)} of {len(cases)} cases failed: " + " | ".join(failures))


if __name__ == "__main__":
    h.main(test)
