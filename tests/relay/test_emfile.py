#!/usr/bin/env python3
"""Out of file descriptors (reliability F9, small): the relay runs with RLIMIT_NOFILE 48, so
only about a dozen connections fit. 60 clients connect and hold. The relay must not crash nor
spin (CPU well under one core while starved), must log the condition at most about once a
second, and every client is served, reset, or still waiting in the backlog: none is answered
with a clean EOF without being relayed. Once the clients leave, 20 new ones are all served."""
import threading
import time

import relayharness as h

NOFILE = 48
N = 60


def echo(c, idx):
    c.settimeout(60)
    while True:
        try:
            d = c.recv(65536)
        except ConnectionResetError:
            return "reset"
        if not d:
            return "eof"
        c.sendall(d)


def test(ctx):
    family, host = h.V4
    srv = h.ThreadServer(ctx, echo, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port], nofile=NOFILE).start()
    clients = []
    for i in range(N):
        s = h.socket.socket(family, h.socket.SOCK_STREAM)
        s.settimeout(30)
        c = {"s": s, "res": None}
        try:
            s.connect(r.addr())
            s.sendall(b"%04d" % i)
        except (ConnectionResetError, BrokenPipeError):  # reset at once: upstream socket() hit EMFILE
            c["res"] = ("reset", b"")
        clients.append(c)

    def reader(c):
        if c["res"]:
            return
        try:
            d = h.recv_exact(c["s"], 4)
            c["res"] = ("served", d)
        except ConnectionResetError:
            c["res"] = ("reset", b"")
        except h.TestFailure as e:
            c["res"] = ("eof", str(e))
        except OSError as e:
            c["res"] = ("error", str(e))
    threads = [threading.Thread(target=reader, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    time.sleep(1.0)
    cpu0, t0 = r.cpu_seconds(), time.monotonic()
    time.sleep(2.0)
    cpu = r.cpu_seconds() - cpu0
    wall = time.monotonic() - t0
    h.check(r.alive(), f"tpengine died while out of fds:\n{r.output()[-2000:]}")
    served = sum(1 for c in clients if c["res"] and c["res"][0] == "served")
    hows = {}
    for i, c in enumerate(clients):
        k = c["res"][0] if c["res"] else "waiting"
        hows[k] = hows.get(k, 0) + 1
        if c["res"] and c["res"][0] == "served":
            h.check(c["res"][1] == b"%04d" % i, f"client {i} got someone else's bytes {c['res'][1]!r}")
    h.log(f"while starved: {hows}; relay CPU {cpu:.2f}s in {wall:.1f}s")
    h.check(served > 0, f"no client served under RLIMIT_NOFILE {NOFILE}: {hows}")
    h.check(hows.get("eof", 0) == 0 and hows.get("error", 0) == 0,
            f"clients must be served, reset, or wait; got {hows}")
    h.check(cpu < 0.5 * wall, f"the relay used {cpu:.2f}s CPU in {wall:.1f}s while out of fds: it spins")
    lines = [l for l in r.stderr().splitlines() if "paus" in l or "descriptor" in l or "EMFILE" in l]
    h.check(len(lines) <= 2 + wall * 1.5, f"{len(lines)} log lines about fd exhaustion in {wall:.1f}s")
    for c in clients:
        c["s"].close()
    for t in threads:
        t.join(10)
    # wait until the relay has let go of everything the departed clients held
    r.wait_stats(lambda s: s["total"]["active"] == 0, 30, "active=0 after the clients left")
    h.wait_until(lambda: r.fd_count() == r.baseline_fds, 30, "fd count back at the baseline")
    # fds are free again: new clients are all served
    for i in range(20):
        s = r.connect(timeout=10)
        s.sendall(b"again")
        h.check(h.recv_exact(s, 5) == b"again", f"new client {i} after the fds came back")
        s.close()
    h.wait_until(lambda: srv.active == 0, 20, "server connections to end")
    srv.check()
    st = r.finish(timeout=30)
    if st:
        h.log(f"closed_by: {st['total']['closed_by']}; accept_paused={st['total'].get('accept_paused')}")
    h.log("survived fd exhaustion; 20/20 new clients served afterwards")


if __name__ == "__main__":
    h.main(test)
