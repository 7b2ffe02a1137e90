#!/usr/bin/env python3
"""Half-close both ways: a FIN from one side becomes shutdown(SHUT_WR) on the other while the
other direction keeps flowing (nginx stream_proxy_half_close.t, Envoy #17160)."""
import hashlib
import os
import socket

import relayharness as h

N = 1 << 20


def client_half_closes(ctx, family, host):
    reply = os.urandom(N)

    def handler(c, idx):
        data, how = h.recv_to_end(c)
        h.check(how == "eof", f"server: upload ended with {how}")
        c.sendall(reply)  # after the client's FIN
        return hashlib.sha256(data).hexdigest()
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    s = r.connect()
    up = os.urandom(N)
    s.sendall(up)
    s.shutdown(socket.SHUT_WR)
    got, how = h.recv_to_end(s)
    s.close()
    h.check(how == "eof", f"client: reply ended with {how} after {len(got)} bytes")
    h.check(got == reply, f"client got {len(got)} bytes of the {N}-byte reply (sha {h.sha(got)} vs {h.sha(reply)})")
    srv.join()
    srv.check()
    h.check(srv.results.get(0) == hashlib.sha256(up).hexdigest(), "server did not get the upload byte-exact")
    st = r.finish(expect_accepted=1)
    if st:
        h.check(st["total"]["closed_by"].get("normal") == 1, f"closed_by: {st['total']['closed_by']}")
    h.log("client SHUT_WR: whole reply received after the FIN")


def server_half_closes(ctx, family, host):
    banner = os.urandom(N)

    def handler(c, idx):
        c.sendall(banner)
        c.shutdown(socket.SHUT_WR)
        data, how = h.recv_to_end(c)  # the client keeps sending after our FIN
        h.check(how == "eof", f"server: upload after its FIN ended with {how}")
        return hashlib.sha256(data).hexdigest()
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    s = r.connect()
    got, how = h.recv_to_end(s)
    h.check(how == "eof", f"client: server data ended with {how}")
    h.check(got == banner, f"client got {len(got)} of {N} bytes before the server's FIN")
    up = os.urandom(N)
    s.sendall(up)  # still allowed: only the other direction is closed
    s.shutdown(socket.SHUT_WR)
    rest, how = h.recv_to_end(s)
    s.close()
    h.check(rest == b"" and how == "eof", f"client: expected EOF at the end, got {how} + {len(rest)} bytes")
    srv.join()
    srv.check()
    h.check(srv.results.get(0) == hashlib.sha256(up).hexdigest(),
            "server did not receive the client's bytes sent after the server's FIN")
    st = r.finish(expect_accepted=1)
    if st:
        h.check(st["total"]["closed_by"].get("normal") == 1, f"closed_by: {st['total']['closed_by']}")
    h.log("server SHUT_WR: client's later bytes all received")


def reset_after_half_close(ctx, family, host, who):
    """Half-closed, then the side still sending resets: the reset still arrives as a reset after
    the bytes, and the counters say who reset."""
    payload = os.urandom(64 << 10)
    acked = []

    def handler(c, idx):
        if who == "server":  # the client half-closed; the server answers part, then resets
            data, how = h.recv_to_end(c)
            acked.append(h.send_then_rst(c, payload))
            return (data, how)
        c.sendall(payload)  # the server half-closes first; the client resets later
        c.shutdown(socket.SHUT_WR)
        return h.recv_to_end(c)
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["-L", host, h.free_port(family, host), host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    s = r.connect()
    if who == "server":
        s.sendall(b"request")
        s.shutdown(socket.SHUT_WR)
        data, how = h.recv_to_end(s)
        s.close()
        srv.join()
        srv.check()
        h.check(srv.results[0] == (b"request", "eof"), f"server got {srv.results[0]}")
    else:
        got, how0 = h.recv_to_end(s)
        h.check((got, how0) == (payload, "eof"), f"client: {len(got)} bytes then {how0} before its reset")
        acked.append(h.send_then_rst(s, payload))
        srv.join()
        srv.check()
        data, how = srv.results[0]
    side = "client" if who == "server" else "server"
    h.check(how == "reset", f"{who} reset after a half-close: the {side} saw {how} after {len(data)} bytes")
    h.check(data == payload[:len(data)] and len(data) >= acked[0],
            f"{who} reset after a half-close: the {side} got {len(data)} bytes, {acked[0]} were acknowledged")
    st = r.finish(expect_accepted=1)
    if st:
        cause = "upstream_reset" if who == "server" else "client_reset"
        h.check(st["total"]["closed_by"].get(cause) == 1, f"closed_by {st['total']['closed_by']}, expected {cause}")
    h.log(f"{who} reset after a half-close: {side} got {len(data)} bytes then ECONNRESET")


def test(ctx):
    client_half_closes(ctx, *h.V4)
    server_half_closes(ctx, *h.V4)
    client_half_closes(ctx, *h.V6)
    server_half_closes(ctx, *h.V6)
    reset_after_half_close(ctx, *h.V4, "server")
    reset_after_half_close(ctx, *h.V4, "client")


if __name__ == "__main__":
    h.main(test)
