#!/usr/bin/env python3
"""--workers 2: 200 connections are spread over both workers (each worker's accepted > 0 in
the SIGUSR1 counters), the per-worker counters sum to the total and each balances."""
import relayharness as h

N = 200


def test(ctx):
    family, host = h.V4
    srv = h.ProtoServer(ctx, family=family)
    r = ctx.relay(["--workers", 2, "-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    if not r.standin:
        h.check(r.workers == 2, f"started with {r.workers} workers, expected 2")
    for _ in range(N):
        h.proto_client(r, "E", 100)
    h.wait_until(lambda: srv.active == 0, 10, "server connections to end")
    srv.check()
    st = r.finish(expect_accepted=N)
    if st:
        w = st["workers"]
        h.check(sorted(w) == [0, 1], f"expected counter blocks for workers 0 and 1, got {sorted(w)}")
        acc = [w[i]["accepted"] for i in (0, 1)]
        h.check(all(a > 0 for a in acc), f"connections not spread: per-worker accepted {acc}")
        h.log(f"per-worker accepted: {acc}")


if __name__ == "__main__":
    h.main(test)
