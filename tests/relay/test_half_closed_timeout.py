#!/usr/bin/env python3
"""Half-closed timeout: the client sends and half-closes, the server never answers nor closes.
With --half-closed-timeout 1s the relay cuts the connection (both peers see the end) and counts
half_closed_timeout, while a healthy half-closed exchange on the same relay is unaffected."""
import threading

import relayharness as h

release = threading.Event()


def handler(c, idx):
    first = c.recv(1)
    if first == b"H":  # hold: read to EOF, then neither answer nor close until the test is done
        data, how = h.recv_to_end(c)
        release.wait(30)
        return ("held", how)
    data, how = h.recv_to_end(c)
    c.sendall(first + data)
    return ("echo", how)


def test(ctx):
    family, host = h.V4
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["--half-closed-timeout", "1s", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    s = r.connect()
    s.sendall(b"Hhello")
    s.shutdown(h.socket.SHUT_WR)
    s.settimeout(20)
    # meanwhile a normal half-closed exchange completes
    ok = {}

    def normal():
        c = r.connect()
        c.sendall(b"Eping")
        c.shutdown(h.socket.SHUT_WR)
        ok["r"] = h.recv_to_end(c)
        c.close()
    t = threading.Thread(target=normal, daemon=True)
    t.start()
    data, how = h.recv_to_end(s)
    s.close()
    release.set()
    h.check(how in ("eof", "reset") and data == b"", f"held half-closed connection: {how} with {data!r}")
    t.join(10)
    h.check(ok.get("r") == (b"Eping", "eof"), f"normal half-closed exchange: {ok}")
    srv.join(connections=2)
    srv.check()
    # the cut connection leaves nothing half-open behind in the kernel either
    h.wait_until(lambda: not r.fin_wait2(), 10, f"no relay socket in FIN_WAIT2 (have {r.fin_wait2()})")
    st = r.finish(expect_accepted=2)
    if st:
        cb = st["total"]["closed_by"]
        h.check(cb.get("half_closed_timeout") == 1, f"half_closed_timeout should be 1: {cb}")
    h.log(f"held half-closed connection cut ({how}); the other completed")


if __name__ == "__main__":
    h.main(test)
