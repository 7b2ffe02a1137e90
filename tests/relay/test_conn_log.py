#!/usr/bin/env python3
"""Close records (`tpengine relay --log-connections json|logfmt`): one record per connection
with its client, original destination, upstream, listener, bytes each way and close cause
(client_eof, upstream_eof, connect_refused); each line carries the timestamp prefix; after a
flood of short connections, records written + records dropped (counted in /metrics) equals the
connections accepted: nothing is lost silently."""
import json
import re
import urllib.request

import relayharness as h

FLOOD = 3000


def records(relay, fmt):
    out = []
    for line in relay.stderr().splitlines():
        if "event=close" not in line and '"event":"close"' not in line:
            continue
        h.check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z tpengine: ", line),
                f"record without the timestamp prefix: {line!r}")
        body = line.split("tpengine: ", 1)[1]
        if fmt == "json":
            out.append(json.loads(body))
        else:
            out.append(dict(kv.split("=", 1) for kv in body.split(" ")))
    return out


def scrape(relay):
    m = h.wait_until(lambda: re.search(r"metrics on (http://\S+/metrics)", relay.stderr()), 10, "metrics line")
    with urllib.request.urlopen(m.group(1), timeout=10) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", text, re.M)
    h.check(m, f"{name} not in /metrics")
    return int(m.group(1))


def echo_handler(c, idx):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    return True


def closer_handler(c, idx):
    """Sends 10 bytes and closes first: the upstream finishes first."""
    c.sendall(b"0123456789")
    return True


def fields(fmt):
    if fmt == "json":
        return lambda r, k: r[k]
    return lambda r, k: r[k if k != "duration_s" else "duration"]


def exact(ctx, fmt):
    echo = h.ThreadServer(ctx, echo_handler)
    r = ctx.relay(["--log-connections", fmt, "-L", "127.0.0.1", h.free_port(), "127.0.0.1",
                   echo.port], upstream_ports=[echo.port]).start()
    clients = {}
    for i in range(5):
        s = r.connect()
        s.sendall(b"a" * (100 + i))
        h.check(h.recv_exact(s, 100 + i) == b"a" * (100 + i), "echo")
        clients["127.0.0.1:%d" % s.getsockname()[1]] = 100 + i
        s.close()
    recs = h.wait_until(lambda: (lambda x: x if len(x) >= 5 else None)(records(r, fmt)), 10, "5 close records")
    get = fields(fmt)
    h.check(len(recs) == 5, f"{len(recs)} records, expected 5")
    for rec in recs:
        c = get(rec, "client")
        h.check(c in clients, f"record client {c} not one of ours {sorted(clients)}")
        n = clients.pop(c)
        h.check(str(get(rec, "bytes_up")) == str(n) and str(get(rec, "bytes_down")) == str(n),
                f"bytes in {rec}, expected {n} each way")
        h.check(get(rec, "cause") == "client_eof", f"cause in {rec}")
        h.check(get(rec, "listener") == "relay", f"listener in {rec}")
        h.check(get(rec, "upstream") == f"127.0.0.1:{echo.port}", f"upstream in {rec}")
        h.check(get(rec, "original") == f"127.0.0.1:{r.port}", f"original in {rec}")
    echo.close()
    r.finish(expect_accepted=5)
    h.log(f"{fmt}: 5 records, exact addresses, bytes and cause")


def causes(ctx):
    closer = h.ThreadServer(ctx, closer_handler)
    r = ctx.relay(["--log-connections", "json", "-L", "127.0.0.1", h.free_port(), "127.0.0.1",
                   closer.port], upstream_ports=[closer.port]).start()
    s = r.connect()
    data, how = h.recv_to_end(s)
    h.check(data == b"0123456789" and how == "eof", f"got {data!r} {how}")
    s.close()
    rec = h.wait_until(lambda: records(r, "json"), 10, "a record")[0]
    h.check(rec["cause"] == "upstream_eof" and rec["bytes_down"] == 10, f"record {rec}")
    closer.close()
    r.finish(expect_accepted=1)
    dead = h.dead_port()
    r = ctx.relay(["--log-connections", "json", "-L", "127.0.0.1", h.free_port(), "127.0.0.1", dead],
                  upstream_ports=[dead]).start()
    h.connect_and_read(r)
    rec = h.wait_until(lambda: records(r, "json"), 10, "a record")[0]
    h.check(rec["cause"] == "connect_refused", f"record {rec}")
    r.finish(expect_accepted=1)
    h.log("causes: upstream_eof, connect_refused")


def flood(ctx):
    echo = h.ThreadServer(ctx, echo_handler)
    r = ctx.relay(["--log-connections", "logfmt", "--metrics", "127.0.0.1:0", "-L", "127.0.0.1",
                   h.free_port(), "127.0.0.1", echo.port], upstream_ports=[echo.port]).start()

    def one(i):
        s = r.connect()
        try:
            s.sendall(b"p")
            h.recv_exact(s, 1)
        finally:
            s.close()
    left = h.run_limited(FLOOD, one, 32, 60)
    h.check(left == 0, f"{left} flood connections hung")
    st = r.wait_stats(lambda s: s["total"]["active"] == 0, 30, "active=0")
    acc = st["total"]["accepted"]

    def settled():
        got = len(records(r, "logfmt"))
        dropped = metric(scrape(r), "tpengine_log_records_dropped_total")
        return (got, dropped) if got + dropped == acc else None
    got, dropped = h.wait_until(settled, 20, "records + dropped = accepted", interval=0.2)
    echo.close()
    r.finish(expect_accepted=FLOOD)
    h.log(f"flood: {FLOOD} connections, {got} records written, {dropped} dropped and counted")


def test(ctx):
    exact(ctx, "json")
    exact(ctx, "logfmt")
    causes(ctx)
    flood(ctx)


if __name__ == "__main__":
    h.main(test)
