#!/usr/bin/env python3
"""Bad arguments exit 2 with a message on stderr; a port in use exits 1 with a message naming
the address; neither leaves anything listening."""
import socket
import subprocess

import relayharness as h


def run(ctx, args, timeout=15):
    try:
        p = subprocess.run([ctx.tpengine, "relay"] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise h.TestFailure(f"`tpengine relay {' '.join(map(str, args))}` did not exit within {timeout}s")
    return p.returncode, p.stderr + p.stdout


def test(ctx):
    if ctx.standin:
        return
    port = h.free_port()
    bad = [
        [],
        [port],                                        # HOST missing
        ["notaport", "127.0.0.1"],
        [70000, "127.0.0.1", 80],
        [port, "127.0.0.1", 0],
        [port, "127.0.0.1", 80, "extra"],
        ["--bogus-option", port, "127.0.0.1"],
        ["--workers", "0", port, "127.0.0.1"],
        ["--workers", "x", port, "127.0.0.1"],
        ["--connect-timeout", "soon", port, "127.0.0.1"],
        ["--idle-timeout", "-1s", port, "127.0.0.1"],
        # one duration grammar with the YAML (issue 13): no floats, nan, inf, exponents, bare
        # numbers or zero durations; `none` only where a timeout can be off
        ["--idle-timeout", "nan", port, "127.0.0.1"],
        ["--idle-timeout", "inf", port, "127.0.0.1"],
        ["--connect-timeout", "1e3s", port, "127.0.0.1"],
        ["--connect-timeout", "1.5s", port, "127.0.0.1"],
        ["--half-closed-timeout", "5", port, "127.0.0.1"],
        ["--idle-timeout", "0s", port, "127.0.0.1"],
        ["--idle-timeout", "25h", port, "127.0.0.1"],
        ["--drain-timeout", "none", port, "127.0.0.1"],
        ["--max-connections", "-5", port, "127.0.0.1"],
        ["-L", "not-an-address", port, "127.0.0.1"],
        ["-L"],
        ["-4", "-L", "::1", port, "127.0.0.1"],         # -4 with a v6 listen address
    ]
    for args in bad:
        rc, out = run(ctx, args)
        h.check(rc == 2, f"`tpengine relay {' '.join(map(str, args))}` exited {rc}, expected 2; output: {out!r}")
        h.check(out.strip(), f"`tpengine relay {' '.join(map(str, args))}` exited 2 without a message")
        h.log(f"exit 2: relay {' '.join(map(str, args))}: {out.strip().splitlines()[0][:120]}")
    # a port in use (no SO_REUSEPORT on our socket, so the relay's bind must fail)
    for family, host in (h.V4, h.V6):
        blocker = socket.socket(family, socket.SOCK_STREAM)
        blocker.bind((host, 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        rc, out = run(ctx, ["-L", host, busy, host, h.free_port(family, host)])
        blocker.close()
        h.check(rc == 1, f"port in use ({host} {busy}): exit {rc}, expected 1; output: {out!r}")
        named = (f"{host}:{busy}" in out or f"[{host}]:{busy}" in out)
        h.check(named, f"port in use: the message does not name the address {host}:{busy}: {out!r}")
        h.log(f"exit 1: {out.strip().splitlines()[0][:160]}")
    # good arguments still work (the test above is not just "everything fails")
    r = ctx.relay(["-l", "-L", "127.0.0.1", h.free_port(), "127.0.0.1", h.dead_port()]).start()
    r.finish()
    # the words for "no timeout" are the YAML's: none (and 0)
    r = ctx.relay(["--idle-timeout", "none", "--connect-timeout", "0", "-L", "127.0.0.1",
                   h.free_port(), "127.0.0.1", h.dead_port()]).start()
    r.finish()


if __name__ == "__main__":
    h.main(test)
