#!/usr/bin/env python3
"""An idle relay does not wake up: its worker threads ("tpengine-w*") make no context switches
while no connection exists, before any traffic and again after a connection has ended (a 100 ms
tick used to wake each worker 10 times a second). Timeouts still work after such a quiet spell:
a silent connection is closed by --idle-timeout."""
import os
import time

import relayharness as h

QUIET_S = 2.0
MAX_SWITCHES = 3  # the old tick gave ~20 per worker in 2 s


def worker_switches(pid):
    total, workers = 0, 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if not f.read().startswith("tpengine-w"):
                    continue
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            workers += 1
        except FileNotFoundError:
            pass
    return total, workers


def check_quiet(r, when):
    before, workers = worker_switches(r.pid())
    h.check(workers == 2, f"expected 2 threads named tpengine-w*, found {workers}")
    time.sleep(QUIET_S)
    after, _ = worker_switches(r.pid())
    h.check(after - before <= MAX_SWITCHES,
            f"{when}: idle workers switched {after - before} times in {QUIET_S} s")
    h.log(f"{when}: {after - before} worker context switches in {QUIET_S} s")


def handler(c, idx):
    data, how = h.recv_to_end(c)
    c.sendall(data)
    return (data, how)


def test(ctx):
    family, host = h.V4
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["--workers", "2", "--idle-timeout", "1s", "-L", host,
                   h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    time.sleep(0.3)  # start-up settles
    check_quiet(r, "before any connection")

    s = r.connect()
    s.sendall(b"ping")
    s.shutdown(h.socket.SHUT_WR)
    data, how = h.recv_to_end(s)
    s.close()
    h.check((data, how) == (b"ping", "eof"), f"echo through the relay: {data!r} {how}")
    r.wait_stats(lambda st: r.counter(st, "closed") == 1, 10, "the connection to be closed")
    time.sleep(0.3)  # the last tick of the connection's lifetime may still fire once
    check_quiet(r, "after the connection ended")

    silent = r.connect()  # the first timer after a quiet spell must still fire
    silent.settimeout(15)  # hang guard only
    data, how = h.recv_to_end(silent)
    silent.close()
    h.check(how in ("eof", "reset") and data == b"", f"silent connection after idle: {how}")
    srv.join(connections=2)
    st = r.finish(expect_accepted=2)
    if st:
        h.check(r.closed_by(st, "idle_timeout") == 1, f"expected 1 idle timeout: {st}")


if __name__ == "__main__":
    h.main(test)
