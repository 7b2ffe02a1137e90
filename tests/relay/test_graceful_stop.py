#!/usr/bin/env python3
"""Graceful stop. SIGTERM with a live connection: new connections are refused at once, the
live one can still finish within the drain timeout, exit code 0, counters balance in the
exit dump. Then a connection that never finishes is cut at the drain timeout (exit 0,
closed_by shutdown=1). And 50 transfers in flight at SIGTERM all finish byte-exact."""
import hashlib
import os
import signal
import socket
import threading
import time

import relayharness as h


def echo(c, idx):
    while True:
        try:
            d = c.recv(65536)
        except ConnectionResetError:  # the drain timeout may cut with a reset
            return "reset"
        if not d:
            return "eof"
        c.sendall(d)


def sigterm(r):
    os.kill(r.pid(), signal.SIGTERM)


def new_connection_refused(r):
    """Probes until a connect is refused; returns how many probes still got through (the
    signal is asynchronous: a probe sent in the same instant may be accepted and served)."""
    through = [0]

    def refused():
        s = socket.socket(r.family, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(r.addr())
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        else:
            through[0] += 1
        finally:
            s.close()
        return False
    # the listener must be gone, not just idle: a connect that the kernel still completes fails
    h.wait_until(refused, 5, "a new connection to be refused after SIGTERM", interval=0.05)
    h.check(through[0] <= 1, f"{through[0]} connections were still accepted after SIGTERM")
    return through[0]


def exit_code(r, timeout, why):
    """The relay's exit code once it has exited by itself within `timeout` s (`why` names what
    it should have exited after)."""
    try:
        return r.proc.wait(timeout)
    except Exception:  # noqa: BLE001
        raise h.TestFailure(f"tpengine did not exit after {why}")


def exit_dump(r):
    st = h.parse_stats(r.output())
    h.check(st is not None, "no counter dump at exit:\n" + r.output()[-1500:])
    r.check_balance(st)
    return st


def live_connection_finishes(ctx, family, host):
    srv = h.ThreadServer(ctx, echo, family=family)
    r = ctx.relay(["--drain-timeout", "20s", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    s = r.connect()
    s.sendall(b"before")
    h.check(h.recv_exact(s, 6) == b"before", "echo before SIGTERM")
    if not r.standin:  # SIGHUP has nothing to reload in relay mode: it must not stop anything
        os.kill(r.pid(), signal.SIGHUP)
        time.sleep(0.3)
        h.check(r.alive(), f"tpengine relay exited on SIGHUP:\n{r.output()[-1000:]}")
        s.sendall(b"hup")
        h.check(h.recv_exact(s, 3) == b"hup", "echo after SIGHUP")
    sigterm(r)
    if r.standin:
        return
    through = new_connection_refused(r)
    h.check(r.alive(), "tpengine exited while a connection was still live (drain timeout 20s)")
    data = os.urandom(256 << 10)
    t = h.send_in_thread(s, data)
    back = h.recv_exact(s, len(data))
    t.join(10)
    h.check(back == data, "the live connection's bytes after SIGTERM differ")
    s.shutdown(socket.SHUT_WR)
    rest, how = h.recv_to_end(s)
    s.close()
    h.check((rest, how) == (b"", "eof"), f"live connection ended with {how}")
    h.check(srv.results.get(0) in (None, "eof"), f"upstream side of the drained connection: {srv.results}")
    rc = exit_code(r, 15, "its last connection finished during the drain")
    h.check(rc == 0, f"exit code {rc} after a graceful stop, expected 0")
    st = exit_dump(r)
    # a probe that raced the signal into the backlog may be served or reset; nothing else counts
    acc = st["total"]["accepted"]
    h.check(st["total"]["bytes_up"] == 6 + 3 + (256 << 10), f"bytes_up at exit: {st['total']}")
    h.check(1 <= acc <= 1 + through and st["total"]["closed_by"].get("normal") == acc,
            f"exit counters: {st['total']}")
    h.wait_until(lambda: not r.relay_sockets(), 10, "no relay socket left")
    srv.join()
    srv.check()
    h.log(f"{host}: refused new connections, drained the live one, exit 0")


def drain_timeout_cuts(ctx, family, host):
    srv = h.ThreadServer(ctx, echo, family=family)
    r = ctx.relay(["--drain-timeout", "1s", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    s = r.connect()
    s.sendall(b"x")
    h.check(h.recv_exact(s, 1) == b"x", "echo before SIGTERM")
    t0 = time.monotonic()
    sigterm(r)
    if r.standin:
        return
    s.settimeout(20)
    data, how = h.recv_to_end(s)  # the client keeps its connection open: the drain timeout cuts it
    s.close()
    h.check(how in ("eof", "reset"), f"a connection left open past the drain timeout ended with {how}")
    rc = exit_code(r, 15, "the drain timeout")
    h.check(rc == 0, f"exit code {rc} after the drain timeout, expected 0")
    st = exit_dump(r)
    h.check(st["total"]["closed_by"].get("shutdown") == 1, f"closed_by shutdown should be 1: {st['total']}")
    h.wait_until(lambda: not r.relay_sockets(), 10, "no relay socket left")
    srv.join()
    srv.check()
    h.log(f"{host}: open connection cut by the 1s drain timeout ({how}, {time.monotonic() - t0:.1f}s), exit 0")


def many_transfers_finish(ctx, family, host, n=50, size=1 << 20):
    """SIGTERM while 50 transfers are in flight: every one completes byte-exact during the
    drain, then exit 0 with all closes normal."""
    srv = h.EchoServer(ctx, family=family)
    r = ctx.relay(["--drain-timeout", "30s", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    socks = [r.connect(timeout=60) for _ in range(n)]
    errors = []
    started = threading.Barrier(n + 1)

    def one(i, s):
        data = os.urandom(size)
        t = h.send_in_thread(s, data[:size // 2])
        started.wait(30)
        back = h.recv_exact(s, size // 2)
        t.join(30)
        s.sendall(data[size // 2:])
        s.shutdown(socket.SHUT_WR)
        rest, how = h.recv_to_end(s)
        s.close()
        if how != "eof" or hashlib.sha256(back + rest).digest() != hashlib.sha256(data).digest():
            errors.append(f"#{i}: {len(back) + len(rest)} of {size} bytes, {how}")

    def wrapped(i, s):
        try:
            one(i, s)
        except Exception as e:  # noqa: BLE001
            errors.append(f"#{i}: {type(e).__name__}: {e}")
    threads = [threading.Thread(target=wrapped, args=(i, s), daemon=True) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    started.wait(30)
    sigterm(r)
    for t in threads:
        t.join(60)
    if r.standin:
        return
    h.check(not errors, f"{len(errors)} transfers broken by the graceful stop: {errors[:3]}")
    rc = exit_code(r, 30, "its last connection finished during the drain")
    h.check(rc == 0, f"exit code {rc}")
    st = exit_dump(r)
    h.check(st["total"]["accepted"] == n and st["total"]["closed_by"] == {"normal": n},
            f"exit counters {st['total']}")
    h.wait_until(lambda: not r.relay_sockets(), 10, "no relay socket left")
    h.log(f"{n} transfers in flight at SIGTERM all finished byte-exact; exit 0")


def test(ctx):
    live_connection_finishes(ctx, *h.V4)
    drain_timeout_cuts(ctx, *h.V4)
    many_transfers_finish(ctx, *h.V4)


if __name__ == "__main__":
    h.main(test)
