#!/usr/bin/env python3
"""The Prometheus endpoint of `tpengine relay --metrics`: scraped while connections are held
open and after they finish, its numbers match what the test did (connections accepted, active,
closed by cause, bytes each way, a refused upstream counted under ECONNREFUSED), the balance
accepted = active + closed holds, and promtool accepts the real output."""
import re
import shutil
import socket
import subprocess
import urllib.request

import relayharness as h

HELD = 6      # connections held open during the first scrape
DONE = 20     # connections that send, get the echo back and close
SIZE = 3000   # bytes each finished connection sends (and gets back)


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        h.check(r.status == 200, f"GET {url}: {r.status}")
        ctype = r.headers.get("Content-Type", "")
        h.check(ctype.startswith("text/plain; version=0.0.4"), f"Content-Type {ctype!r}")
        return r.read().decode()


def value(text, name, **labels):
    """The sample `name{labels}`; labels must match exactly (order as rendered)."""
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if got == {k: str(v) for k, v in labels.items()}:
            return float(m.group(4))
    raise h.TestFailure(f"no sample {name}{labels} in:\n{text[:3000]}")


def metrics_url(relay):
    m = h.wait_until(lambda: re.search(r"metrics on (http://\S+/metrics)", relay.stderr()), 10,
                     "'metrics on' on stderr")
    return m.group(1)


def promtool_check(text):
    tool = shutil.which("promtool")
    h.check(tool is not None, "promtool not found (tools/install-deps.sh installs prometheus)")
    p = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    h.check(p.returncode == 0, f"promtool check metrics failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    h.log("promtool check metrics: ok")


def echo_handler(c, idx):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    return True


def traffic(ctx):
    srv = h.ThreadServer(ctx, echo_handler)
    r = ctx.relay(["--workers", "2", "--metrics", "127.0.0.1:0", "-L", "127.0.0.1",
                   h.free_port(), "127.0.0.1", srv.port], upstream_ports=[srv.port]).start()
    url = metrics_url(r)
    held = []
    for _ in range(HELD):
        s = r.connect()
        s.sendall(b"x")
        h.check(h.recv_exact(s, 1) == b"x", "echo through the relay")
        held.append(s)
    text = scrape(url)
    acc = value(text, "tpengine_connections_accepted_total", listener="relay")
    act = value(text, "tpengine_connections_active", listener="relay")
    closed = sum(value(text, "tpengine_connections_closed_total", listener="relay", cause=c)
                 for c in re.findall(r'listener="relay",cause="(\w+)"', text))
    h.check((acc, act, closed) == (HELD, HELD, 0), f"while holding {HELD}: accepted={acc} active={act} closed={closed}")
    promtool_check(text)

    for _ in range(DONE):
        s = r.connect()
        data = bytes(range(256)) * (SIZE // 256) + b"z" * (SIZE % 256)
        s.sendall(data)
        h.check(h.recv_exact(s, SIZE) == data, "echo of a finished connection")
        s.close()  # the client finishes first: client_eof
    for s in held:
        s.close()
    total = HELD + DONE
    text = h.wait_until(lambda: (lambda t: t if value(t, "tpengine_connections_active", listener="relay") == 0 else None)(scrape(url)),
                        15, "active 0 in /metrics")
    acc = value(text, "tpengine_connections_accepted_total", listener="relay")
    eof = value(text, "tpengine_connections_closed_total", listener="relay", cause="client_eof")
    up = value(text, "tpengine_bytes_total", listener="relay", direction="up")
    down = value(text, "tpengine_bytes_total", listener="relay", direction="down")
    want_bytes = HELD + DONE * SIZE
    h.check(acc == total, f"accepted={acc}, expected {total}")
    h.check(eof == total, f"client_eof={eof}, expected {total}")
    h.check(up == want_bytes and down == want_bytes, f"bytes up={up} down={down}, expected {want_bytes} each")
    count = value(text, "tpengine_connect_duration_seconds_count", listener="relay")
    inf = value(text, "tpengine_connect_duration_seconds_bucket", listener="relay", le="+Inf")
    h.check(count == total and inf == total, f"connect histogram count={count} +Inf={inf}, expected {total}")
    per_worker = sum(value(text, "tpengine_worker_connections_accepted_total", worker=w) for w in range(r.workers))
    h.check(per_worker == total, f"per-worker accepted sum {per_worker}, expected {total}")
    promtool_check(text)
    # Anything but GET /metrics is refused.
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /other HTTP/1.0\r\n\r\n")
        h.check(h.recv_to_end(s)[0].startswith(b"HTTP/1.0 404"), "GET /other is not 404")
    srv.close()
    r.finish(expect_accepted=total)
    h.log(f"metrics: accepted={acc} client_eof={eof} bytes up/down={up:.0f}/{down:.0f} as sent")


def refused(ctx):
    dead = h.dead_port()
    r = ctx.relay(["--metrics", "127.0.0.1:0", "-L", "127.0.0.1", h.free_port(), "127.0.0.1", dead],
                  upstream_ports=[dead]).start()
    url = metrics_url(r)
    n = 5
    for _ in range(n):
        data, how = h.connect_and_read(r)
        h.check(how == "reset", f"refused upstream: client saw {how}")
    text = h.wait_until(lambda: (lambda t: t if value(t, "tpengine_connections_active", listener="relay") == 0 else None)(scrape(url)),
                        15, "active 0")
    e = value(text, "tpengine_connect_errors_total", listener="relay", errno="ECONNREFUSED")
    c = value(text, "tpengine_connections_closed_total", listener="relay", cause="connect_refused")
    h.check(e == n and c == n, f"ECONNREFUSED={e} connect_refused={c}, expected {n}")
    r.finish(expect_accepted=n)
    h.log(f"refused upstream: connect_errors{{errno=ECONNREFUSED}}={e:.0f}")


def test(ctx):
    traffic(ctx)
    refused(ctx)


if __name__ == "__main__":
    h.main(test)
