#!/usr/bin/env python3
"""`tpengine ctl` against `tpengine relay --control PATH`: `connections` lists exactly the live
connections the test holds (client, original destination, upstream, bytes each way, state,
worker), in text and JSON, with --listener and --limit; `status` shows the counters; the socket
is mode 0600; `reload` of a relay (no file) answers an error with exit 1; `stop` stops
gracefully (exit 0)."""
import json
import os
import stat
import subprocess
import tempfile
import threading

import relayharness as h

HELD = 5


def ctl(ctx, sock, *args, rc=0):
    p = subprocess.run([ctx.tpengine, "ctl", *args, "--socket", sock], capture_output=True,
                       text=True, timeout=30)
    h.check(p.returncode == rc, f"ctl {' '.join(args)}: exit {p.returncode}, expected {rc}:\n{p.stdout}{p.stderr}")
    return p.stdout, p.stderr


RELEASE = threading.Event()


def echo_handler(c, idx):
    """Echoes; after the client's FIN keeps its own side open until RELEASE (half-closed)."""
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    RELEASE.wait(30)
    return True


def test(ctx):
    sock = os.path.join(tempfile.mkdtemp(prefix="tpctl."), "control.sock")
    srv = h.ThreadServer(ctx, echo_handler)
    r = ctx.relay(["--workers", "2", "--control", sock, "-L", "127.0.0.1", h.free_port(),
                   "127.0.0.1", srv.port], upstream_ports=[srv.port]).start()
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    h.check(mode == 0o600, f"control socket mode {oct(mode)}, expected 0600")

    out, _ = ctl(ctx, sock, "connections", "--json")
    h.check(json.loads(out) == [], f"no connection yet, got {out}")
    held = {}
    for i in range(HELD):
        s = r.connect()
        s.sendall(b"y" * (i + 1))
        h.check(h.recv_exact(s, i + 1) == b"y" * (i + 1), "echo")
        held["%s:%d" % s.getsockname()[:2]] = (s, i + 1)
    out, _ = ctl(ctx, sock, "connections", "--json")
    conns = json.loads(out)
    h.check(sorted(c["client"] for c in conns) == sorted(held),
            f"ctl connections clients {sorted(c['client'] for c in conns)}, held {sorted(held)}")
    for c in conns:
        n = held[c["client"]][1]
        h.check(c["listener"] == "relay", f"listener {c['listener']}")
        h.check(c["original"] == f"127.0.0.1:{r.port}", f"original {c['original']}")
        h.check(c["upstream"] == f"127.0.0.1:{srv.port}", f"upstream {c['upstream']}")
        h.check(c["bytes_up"] == n and c["bytes_down"] == n, f"bytes {c}, expected {n} each way")
        h.check(c["state"] == "relaying", f"state {c['state']}")
        h.check(c["worker"] in range(r.workers), f"worker {c['worker']}")
    text, _ = ctl(ctx, sock, "connections")
    lines = text.strip().splitlines()
    h.check(lines[0].split()[:3] == ["WORKER", "LISTENER", "CLIENT"] and len(lines) == HELD + 1,
            f"text table:\n{text}")
    out, _ = ctl(ctx, sock, "connections", "--json", "--limit", "2")
    h.check(len(json.loads(out)) == 2, f"--limit 2 gave {out}")
    out, _ = ctl(ctx, sock, "connections", "--json", "--listener", "nosuch")
    h.check(json.loads(out) == [], f"--listener nosuch gave {out}")

    # One half-closed: the client sends FIN, the echo server keeps its side open.
    first = next(iter(held))
    held[first][0].shutdown(1)
    def half():
        cs = json.loads(ctl(ctx, sock, "connections", "--json")[0])
        return [c for c in cs if c["client"] == first and c["state"] == "half-closed"]
    h.wait_until(half, 10, "the half-closed connection shown as half-closed")

    st = json.loads(ctl(ctx, sock, "status", "--json")[0])
    h.check(st["workers"] == r.workers and st["active"] == HELD and st["accepted"] == HELD,
            f"status {st}")
    h.check(st["listeners"][0]["name"] == "relay" and st["listeners"][0]["active"] == HELD, f"status {st}")
    text, _ = ctl(ctx, sock, "status")
    h.check("listener relay: accepted=%d active=%d" % (HELD, HELD) in text, f"status text:\n{text}")

    _, err = ctl(ctx, sock, "reload", rc=1)
    h.check("nothing to reload" in err, f"reload of a relay: {err}")
    _, err = ctl(ctx, sock, "bogus", rc=2)

    RELEASE.set()
    for s, _ in held.values():
        s.close()
    st = r.wait_stats(lambda s: s["total"]["active"] == 0, 15, "active=0")
    h.check(json.loads(ctl(ctx, sock, "connections", "--json")[0]) == [], "connections after close")
    r.leak_check()
    out, _ = ctl(ctx, sock, "stop")
    h.check("stopping" in out, f"stop answered {out!r}")
    r.proc.wait(20)
    h.check(r.proc.returncode == 0, f"exit {r.proc.returncode} after ctl stop")
    h.check(not os.path.exists(sock), "control socket left behind after stop")
    srv.close()
    h.log(f"ctl: {HELD} held connections listed exactly; status, reload refusal and stop ok")


if __name__ == "__main__":
    h.main(test)
