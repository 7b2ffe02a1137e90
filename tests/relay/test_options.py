#!/usr/bin/env python3
"""Options that change what the relay does per connection: --mark puts SO_MARK on upstream
sockets (seen by `ss -e` as fwmark), -v logs one line per connection naming the client, the
original destination and the upstream, -f (TCP Fast Open listener) still relays byte-exact.
REMOTEPORT defaults to LOCALPORT, and HOST may be a host name."""
import os
import re
import subprocess

import relayharness as h


def upstream_marks(up_port):
    out = subprocess.run(["ss", "-tnie", f"dport = :{up_port}"], capture_output=True, text=True).stdout
    return re.findall(r"fwmark:(0x[0-9a-f]+)", out)


def test(ctx):
    if ctx.standin:
        return
    family, host = h.V4
    root = os.geteuid() == 0  # SO_MARK needs CAP_NET_ADMIN: the mark part runs as root only
    srv = h.ProtoServer(ctx, family=family)
    lport = h.free_port(family, host)
    mark = ["--mark", "0x1234"] if root else []
    r = ctx.relay(["-v", "-f"] + mark + ["-L", host, lport, host, srv.port], family=family,
                  upstream_ports=[srv.port]).start()
    # a held connection, to look at its upstream socket
    s = r.connect()
    s.sendall(b"E" + (4).to_bytes(8, "big") + b"ping")
    h.check(h.recv_exact(s, 4) == b"ping", "echo through the relay")
    marks = upstream_marks(srv.port)
    h.check(marks == (["0x1234"] if root else []), f"--mark 0x1234: upstream sockets show fwmark {marks} (ss -tnie)")
    client_port = s.getsockname()[1]
    s.shutdown(h.socket.SHUT_WR)
    h.recv_to_end(s)
    s.close()
    ports = [client_port]
    for n in (1, 100000):
        c = r.connect()
        ports.append(c.getsockname()[1])
        c.close()
        h.proto_client(r, "E", n)
    h.wait_until(lambda: srv.active == 0, 10, "server connections to end")
    st = r.finish()
    log = r.stderr()
    for p in ports:
        lines = [l for l in log.splitlines() if f"{host}:{p} " in l or l.endswith(f"{host}:{p}")]
        h.check(lines, f"-v: no log line names client {host}:{p}:\n{log[-1500:]}")
        h.check(f"{host}:{srv.port}" in lines[0], f"-v: the line for client port {p} does not name the upstream "
                f"{host}:{srv.port}: {lines[0]}")
    h.log(f"-v line: {lines[0]}")
    h.log(f"--mark ok ({marks}), -f relays, {st['total']['accepted'] if st else '?'} connections logged")
    # REMOTEPORT defaults to LOCALPORT (tcprdr), and HOST may be a name
    lport = h.free_port(family, "127.0.0.2")
    srv3 = h.ProtoServer(ctx, family=family, host="127.0.0.2", port=lport)
    r3 = ctx.relay(["-L", host, lport, "127.0.0.2"], family=family, upstream_ports=[lport]).start()
    h.proto_client(r3, "E", 1000, server=srv3)
    r3.finish(expect_accepted=1)
    srv4 = h.ProtoServer(ctx, family=family)
    r4 = ctx.relay(["-4", "-L", host, h.free_port(family, host), "localhost", srv4.port], family=family,
                   upstream_ports=[srv4.port]).start()
    h.proto_client(r4, "E", 1000, server=srv4)
    r4.finish(expect_accepted=1)
    h.log("REMOTEPORT defaults to LOCALPORT; HOST `localhost` resolves")
    if not root:
        h.log("not root: --mark not checked")
        return
    # decimal mark and no mark
    srv2 = h.ThreadServer(ctx, lambda c, i: h.recv_to_end(c), family=family)
    for args, want in ((["--mark", "4660"], ["0x1234"]), ([], [])):
        r2 = ctx.relay(args + ["-L", host, h.free_port(family, host), host, srv2.port], family=family,
                       upstream_ports=[srv2.port]).start()
        c = r2.connect()
        c.sendall(b"x")
        h.wait_until(lambda: srv2.active == 1, 10, "the upstream connection")
        marks = upstream_marks(srv2.port)
        h.check(marks == want, f"{args}: upstream fwmark {marks}, expected {want}")
        c.close()
        h.wait_until(lambda: srv2.active == 0, 10, "the upstream connection to end")
        r2.finish()


if __name__ == "__main__":
    h.main(test)
