#!/usr/bin/env python3
"""Slow readers (issue 13 item 7): N clients connect through `tpengine relay`, their servers
push data as fast as the relay takes it, and the clients read nothing for STALL seconds. The
script reports tpengine's RSS idle (after a warm-up), at the end of the stall (growth per stalled reader), and
AFTER seconds after the clients and servers have gone (memory given back), plus the relay's
held-bytes counters if it prints them.

    bench/memory/slow_reader.py --tpengine build/tools/tpengine/tpengine            # 50 x 20 s, 30 s after
    bench/memory/slow_reader.py --tpengine ... --clients 5 --stall 1 --after 2      # a quick try

Bars (issue 13 item 7): growth per stalled reader <= 256 KiB; RSS within 10% of idle AFTER s
after the load ends. Exit status 0 when both bars are met, 1 otherwise."""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CHUNK = b"x" * 65536


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tpengine", required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--stall", type=float, default=20.0)
    ap.add_argument("--after", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    sport = srv.getsockname()[1]
    stop = threading.Event()
    pushed = [0]

    def push(c):
        c.settimeout(1)
        while not stop.is_set():
            try:
                pushed[0] += c.send(CHUNK)
            except socket.timeout:
                continue
            except OSError:
                break
        c.close()

    def accept_loop():
        srv.settimeout(0.5)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=push, args=(c,), daemon=True).start()
    threading.Thread(target=accept_loop, daemon=True).start()

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    lport = probe.getsockname()[1]
    probe.close()
    errf = tempfile.NamedTemporaryFile(prefix="slow_reader.", suffix=".stderr", delete=False)
    p = subprocess.Popen([a.tpengine, "relay", "--workers", str(a.workers), "-L", "127.0.0.1", str(lport),
                          "127.0.0.1", str(sport)], stderr=errf, stdout=subprocess.DEVNULL)
    try:
        port = None
        for _ in range(100):
            m = re.search(r"listening on \S+:(\d+)", open(errf.name).read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if port is None:
            sys.exit("tpengine did not start: " + open(errf.name).read())
        time.sleep(0.5)
        cold = rss_kib(p.pid)
        # Warm up: a few short connections (each worker allocates its first chunk of
        # connection slots, ~250 KiB, once for its lifetime); "idle" is measured after them.
        for _ in range(8 * a.workers):
            s = socket.create_connection(("127.0.0.1", port))
            s.recv(65536)
            s.close()
        time.sleep(1.5)
        idle = rss_kib(p.pid)
        clients = []
        for _ in range(a.clients):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that holds little
            s.connect(("127.0.0.1", port))
            clients.append(s)
        time.sleep(a.stall)
        stalled = rss_kib(p.pid)
        if os.environ.get("SMAPS"):
            subprocess.run(["python3", os.environ["SMAPS"], str(p.pid)])
        os.kill(p.pid, signal.SIGUSR1)
        time.sleep(0.2)
        for s in clients:
            s.close()
        stop.set()
        t_end = time.monotonic()
        time.sleep(a.after)
        after = rss_kib(p.pid)
        if os.environ.get("SMAPS"):
            subprocess.run(["python3", os.environ["SMAPS"], str(p.pid)])
        per = (stalled - idle) / a.clients
        print(f"clients={a.clients} stall={a.stall}s after={a.after}s workers={a.workers} "
              f"pushed={pushed[0] >> 20}MiB")
        print(f"rss_cold_kib={cold} rss_idle_kib={idle} rss_stalled_kib={stalled} "
              f"rss_after_kib={after}")
        print(f"growth_per_stalled_reader_kib={per:.0f} (bar 256)")
        print(f"after_vs_idle={100.0 * (after - idle) / idle:+.1f}% (bar +10%) "
              f"measured {time.monotonic() - t_end:.0f}s after the load ended")
        ok = per <= 256 and after <= idle * 1.10
        print("bars met" if ok else "bars NOT met")
        sys.exit(0 if ok else 1)
    finally:
        stop.set()
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
        os.unlink(errf.name)


if __name__ == "__main__":
    main()
