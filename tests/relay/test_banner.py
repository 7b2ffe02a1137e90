#!/usr/bin/env python3
"""A server that speaks first: its banner reaches the client before the client sends anything
(reliability F14, Envoy UpstreamWritesFirst)."""
import relayharness as h

BANNER = b"220 tpengine-test ESMTP ready\r\n"


def handler(c, idx):
    c.sendall(BANNER)
    data, how = h.recv_to_end(c)
    c.sendall(b"echo:" + data)
    return (data, how)


def test(ctx):
    for family, host in (h.V4, h.V6):
        srv = h.ThreadServer(ctx, handler, family=family)
        r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                      upstream_ports=[srv.port]).start()
        s = r.connect(timeout=10)
        got = b""
        while len(got) < len(BANNER):
            try:
                d = s.recv(100)
            except h.socket.timeout:
                raise h.TestFailure(f"{host}: no banner within 10 s before sending anything (got {got!r})")
            h.check(d, f"{host}: EOF before the banner (got {got!r})")
            got += d
        h.check(got == BANNER, f"{host}: banner {got!r}")
        s.sendall(b"QUIT\r\n")
        s.shutdown(h.socket.SHUT_WR)
        rest, how = h.recv_to_end(s)
        s.close()
        h.check((rest, how) == (b"echo:QUIT\r\n", "eof"), f"{host}: after the banner got {rest!r} ({how})")
        srv.join()
        srv.check()
        r.finish(expect_accepted=1)
        h.log(f"{host}: banner arrived before the client spoke")


if __name__ == "__main__":
    h.main(test)
