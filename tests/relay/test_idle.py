#!/usr/bin/env python3
"""Idle timeout (--idle-timeout 1s): a silent connection is closed and counted idle_timeout;
a connection trickling 1 byte every 0.3 s for 3 s survives, and all its bytes arrive."""
import threading
import time

import relayharness as h


def handler(c, idx):
    data, how = h.recv_to_end(c)
    if data:  # the trickle connection: answer with the count, then FIN
        c.sendall(str(len(data)).encode())
    return (data, how)


def test(ctx):
    family, host = h.V4
    srv = h.ThreadServer(ctx, handler, family=family)
    r = ctx.relay(["--idle-timeout", "1s", "-L", host, h.free_port(family, host), host, srv.port],
                  family=family, upstream_ports=[srv.port]).start()
    silent = r.connect()
    res = {}

    def trickle():
        s = r.connect()
        try:
            for i in range(10):  # 3 s in all, each gap well under the idle timeout
                s.sendall(bytes([65 + i]))
                time.sleep(0.3)
            s.shutdown(h.socket.SHUT_WR)
            res["answer"] = h.recv_to_end(s)
        except Exception as e:  # noqa: BLE001
            res["error"] = e
        finally:
            s.close()
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    silent.settimeout(15)  # hang guard only
    data, how = h.recv_to_end(silent)
    silent.close()
    h.check(how in ("eof", "reset") and data == b"", f"silent connection: {how} with {len(data)} bytes")
    h.check(how != "timeout", "silent connection was never closed by the idle timeout")
    t.join(30)
    h.check("error" not in res, f"trickle connection failed: {res.get('error')}")
    h.check(res.get("answer") == (b"10", "eof"), f"trickle connection: expected b'10' then EOF, got {res}")
    srv.join(connections=2)
    srv.check()
    st = r.finish(expect_accepted=2)
    if st:
        cb = st["total"]["closed_by"]
        h.check(cb.get("idle_timeout") == 1, f"idle_timeout should be 1: {cb}")
        h.check(cb.get("normal") == 1, f"the trickle connection should end normally: {cb}")
    h.log(f"silent connection closed ({how}); trickle connection survived 3 s")


if __name__ == "__main__":
    h.main(test)
