#!/usr/bin/env python3
"""Side-by-side UDP relay comparison on loopback (run through udp_compare.sh).

Targets: direct (no relay), tpengine (`relay -u`, one worker), nginx (stream, `listen ... udp`),
socat (UDP4-RECVFROM,fork); tpengine-nogso (TPENGINE_UDP_NO_GSO=1: one send per datagram, no GRO)
only when named in --only. Relays pinned to CPU 1, the tpbench client and servers to CPU 0.
Workloads (tpbench udp, closed loop with a window per flow):
  small64 / small512  64 flows x 64 / 512-byte datagrams: packets/s and relay CPU us/datagram
  pingpong            1 flow, 64 bytes, one in flight: round-trip p50/p99
  bulk1400            8 flows x 1,400 bytes, 32 in flight each: Gbit/s per busy relay core
Optional: sockperf ping-pong through each target (if sockperf is installed), and --idle-flows N:
N idle flows through tpengine, RSS per flow. Repetitions are interleaved; cells show the median.
The issue's bars are checked at the end (tpengine vs the best peer).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import find_binary, tree_cpu_ticks, rss_kib, CLK_TCK  # noqa: E402

PEERS = ["nginx", "socat"]
RELAY_CPU = "1"
CLIENT_CPU = "0"
WORKLOADS = {
    "small64": ["--flows", "64", "--size", "64", "--window", "4"],
    "small512": ["--flows", "64", "--size", "512", "--window", "4"],
    "pingpong": ["--flows", "1", "--size", "64", "--window", "1"],
    "bulk1400": ["--flows", "8", "--size", "1400", "--window", "32"],
}


def free_udp_port():
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        try:
            with socket.socket() as t:
                t.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_udp_echo(port, what, timeout=10.0):
    end = time.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.time() < end:
            s.sendto(b"probe", ("127.0.0.1", port))
            try:
                if s.recv(100) == b"probe":
                    return
            except OSError:
                time.sleep(0.05)
    raise RuntimeError(f"{what}: no echo through port {port} within {timeout}s")


class Lab:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="tpbench-udp.")
        self.procs = []
        self.targets = {}

    def spawn(self, name, argv, cpu, env=None):
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             env=dict(os.environ, **env) if env else None)
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _, p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = []
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start_server(self):
        port = free_udp_port()
        self.spawn("server", [self.a.tpbench, "serve", "--listen", f"127.0.0.1:{port}", "--mode",
                              "udp-echo"], CLIENT_CPU)
        wait_udp_echo(port, "tpbench serve udp-echo")
        self.server = port
        self.targets["direct"] = {"port": port, "pids": []}

    def start_target(self, name, server=None, key=None, probe=True):
        """A relay NAME in front of SERVER (default: the tpbench echo), known as KEY."""
        port = free_udp_port()
        s = server or self.server
        key = key or name
        if name in ("tpengine", "tpengine-nogso"):
            # tpengine-nogso: the A/B of send batching (one send per datagram, no GRO).
            p = self.spawn(key, [self.a.tpengine, "relay", "-u", "--workers", "1", "-L",
                                  "127.0.0.1", str(port), "127.0.0.1", str(s)], RELAY_CPU,
                           {"TPENGINE_UDP_NO_GSO": "1"} if name == "tpengine-nogso" else None)
        elif name == "nginx":
            d = os.path.join(self.tmp, key)
            os.makedirs(d, exist_ok=True)
            cfg = os.path.join(d, "nginx.conf")
            with open(cfg, "w") as f:
                f.write("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
                        "daemon off;\nworker_processes 1;\nworker_rlimit_nofile 20000;\n"
                        f"error_log {d}/error.log;\npid {d}/nginx.pid;\n"
                        "events { worker_connections 9500; }\nstream {\n"
                        f"  server {{ listen 127.0.0.1:{port} udp reuseport; "
                        f"proxy_pass 127.0.0.1:{s}; proxy_timeout 60s; }}\n}}\n")
            p = self.spawn(key, [self.a.nginx, "-p", d, "-e", f"{d}/error.log", "-c", cfg],
                           RELAY_CPU)
        elif name == "socat":
            # One child per client address (fork): socat's usual UDP relay set-up.
            p = self.spawn(key, [self.a.socat, f"UDP4-RECVFROM:{port},bind=127.0.0.1,reuseaddr,fork",
                                  f"UDP4-SENDTO:127.0.0.1:{s}"], RELAY_CPU)
        else:
            raise ValueError(name)
        if probe:
            wait_udp_echo(port, name)
        else:
            time.sleep(0.5)
        self.targets[key] = {"port": port, "pids": [p.pid]}

    def run(self, target, workload, duration):
        t = self.targets[target]
        before = tree_cpu_ticks(t["pids"])
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, self.a.tpbench, "udp", "--target",
                              f"127.0.0.1:{t['port']}", "--duration", str(duration), "--json"]
                             + WORKLOADS[workload], capture_output=True, text=True, timeout=duration + 60)
        after = tree_cpu_ticks(t["pids"])
        if out.returncode not in (0, 1) or not out.stdout.strip():
            raise RuntimeError(f"tpbench udp {target}/{workload}: {out.stderr}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["relay_cpu_s"] = (after - before) / CLK_TCK
        dgrams = r["sent"] + r["received"]  # each relayed once per direction
        r["us_per_dgram"] = r["relay_cpu_s"] * 1e6 / dgrams if dgrams and t["pids"] else None
        busy = r["relay_cpu_s"] / r["duration_s"] if r["duration_s"] else 0
        r["gbit_per_core"] = r["gbit_s"] / busy if busy > 0.01 else None
        return r

    def sockperf(self, target, duration):
        """sockperf ping-pong through TARGET to a sockperf server: its client ignores replies not
        marked by a sockperf server, so the tpbench echo cannot answer it; each relay gets a
        second instance in front of the sockperf server."""
        if not self.a.sockperf:
            return None
        if not getattr(self, "sockperf_server", None):
            self.sockperf_server = free_udp_port()
            self.spawn("sockperf-server", [self.a.sockperf, "server", "-i", "127.0.0.1", "-p",
                                           str(self.sockperf_server)], CLIENT_CPU)
            time.sleep(0.5)
        key = target
        if target == "direct":
            port = self.sockperf_server
        else:
            key = target + "-sockperf"
            self.start_target(target, self.sockperf_server, key, probe=False)
            port = self.targets[key]["port"]
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, self.a.sockperf, "ping-pong", "-i",
                              "127.0.0.1", "-p", str(port), "-t",
                              str(max(1, int(duration))), "--msg-size", "64"],
                             capture_output=True, text=True, timeout=duration + 60)
        res = {}
        for line in out.stdout.splitlines():
            for key, tag in (("p50", "50.000"), ("p99", "99.000")):
                if f"<{tag}>" in line.replace(" ", "") or f"{tag} =" in line:
                    try:
                        res[key] = float(line.split("=")[-1].strip())
                    except ValueError:
                        pass
        return res or None

    def idle_flows(self, n):
        """N idle flows through tpengine (one worker): RSS growth per flow."""
        port = free_udp_port()
        p = self.spawn("tpengine-idle", [self.a.tpengine, "relay", "-u", "--workers", "1",
                                         "--max-flows", str(n * 2), "--max-flows-per-client",
                                         str(n * 2), "--udp-idle-timeout", "10m", "-L",
                                         "127.0.0.1", str(port), "127.0.0.1", str(self.server)],
                       RELAY_CPU)
        wait_udp_echo(port, "tpengine idle")
        time.sleep(0.5)
        base = rss_kib(p.pid)
        # Each flow is one source address and port; the client socket closes at once (the flow
        # lives on in the relay until its idle timeout). Ports in use elsewhere are skipped.
        sent, ip_i = 0, 0
        while sent < n:
            ip_i += 1
            src = f"127.0.{ip_i}.1"
            for port_k in range(10000, 60000):
                if sent >= n:
                    break
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    try:
                        c.bind((src, port_k))
                    except OSError:
                        continue
                    c.sendto(b"i", ("127.0.0.1", port))
                sent += 1
        time.sleep(2)
        rss = rss_kib(p.pid)
        os.kill(p.pid, signal.SIGUSR1)  # how many flows the relay really holds
        time.sleep(0.5)
        with open(os.path.join(self.tmp, "tpengine-idle.log")) as f:
            active = [int(x) for x in __import__("re").findall(r"^  udp: .*?flows_active=(\d+)",
                                                               f.read(), __import__("re").M)]
        flows = active[0] if active else 0
        return {"flows": flows, "asked": n, "rss_base_kib": base, "rss_kib": rss,
                "bytes_per_flow": (rss - base) * 1024 / flows if flows else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="direct,tpengine," + ",".join(PEERS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--idle-flows", type=int, default=0, help="also measure N idle flows (e.g. 100000)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", help="write all runs to this file")
    ap.add_argument("--tpbench", default=find_binary("tpbench", "TPBENCH", ["build/tools/tpbench/tpbench"]))
    ap.add_argument("--tpengine", default=find_binary("tpengine", "TPENGINE", ["build/tools/tpengine/tpengine"]))
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--socat", default=shutil.which("socat") or "/usr/bin/socat")
    ap.add_argument("--sockperf", default=shutil.which("sockperf"))
    a = ap.parse_args()
    targets = [t for t in a.only.split(",") if t]
    workloads = [w for w in a.workloads.split(",") if w]
    lab = Lab(a)
    runs = {}
    try:
        lab.start_server()
        for t in targets:
            if t != "direct":
                lab.start_target(t)
        for rep in range(a.reps):
            for w in workloads:
                for t in targets:
                    r = lab.run(t, w, a.duration)
                    runs.setdefault((w, t), []).append(r)
                    print(f"rep {rep + 1} {w:9} {t:9} pps {r['pps_received']:>10.0f} "
                          f"loss {r['loss_pct']:.3f}% p50 {r['rtt_us']['p50']:.1f}us "
                          f"p99 {r['rtt_us']['p99']:.1f}us Gbit/s {r['gbit_s']:.3f} "
                          f"relay cpu {r['relay_cpu_s']:.2f}s", file=sys.stderr, flush=True)
        sp = {t: lab.sockperf(t, a.duration) for t in targets} if a.sockperf else {}
        idle = lab.idle_flows(a.idle_flows) if a.idle_flows else None
    finally:
        lab.stop()

    def med(w, t, key):
        vals = [r[key] for r in runs.get((w, t), []) if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def med_rtt(w, t, q):
        vals = [r["rtt_us"][q] for r in runs.get((w, t), [])]
        return statistics.median(vals) if vals else None

    def f(v, d=1):
        return "-" if v is None else f"{v:.{d}f}"
    print("| workload | target | pkt/s | loss % | rtt p50 us | rtt p99 us | Gbit/s | relay us/dgram | Gbit/s per relay core |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in workloads:
        for t in targets:
            print(f"| {w} | {t} | {f(med(w, t, 'pps_received'), 0)} | {f(med(w, t, 'loss_pct'), 3)} | "
                  f"{f(med_rtt(w, t, 'p50'))} | {f(med_rtt(w, t, 'p99'))} | {f(med(w, t, 'gbit_s'), 3)} | "
                  f"{f(med(w, t, 'us_per_dgram'), 2)} | {f(med(w, t, 'gbit_per_core'), 2)} |")
    if sp:
        print("\nsockperf ping-pong, 64 bytes (us):", json.dumps(sp))
    if idle:
        print(f"\nidle flows: {idle['flows']} of {idle['asked']} flows live, RSS {idle['rss_base_kib']} -> "
              f"{idle['rss_kib']} KiB, {f(idle['bytes_per_flow'], 0)} bytes per flow (bar: <= 1024)")
    peers = [p for p in PEERS if p in targets]
    if "tpengine" in targets and peers:
        print("\nbars (tpengine vs best peer):")
        for w in ("small64", "small512"):
            if w not in workloads:
                continue
            best = max((med(w, p, "pps_received") or 0) for p in peers)
            cost = min((med(w, p, "us_per_dgram") or 1e9) for p in peers)
            mine, mycost = med(w, "tpengine", "pps_received") or 0, med(w, "tpengine", "us_per_dgram")
            print(f"  {w}: pkt/s {mine:.0f} vs 2 x {best:.0f}: {'ok' if mine >= 2 * best else 'MISSED'}; "
                  f"us/dgram {f(mycost, 2)} vs 0.5 x {cost:.2f}: "
                  f"{'ok' if mycost is not None and mycost <= 0.5 * cost else 'MISSED'}")
        if "pingpong" in workloads:
            for q in ("p50", "p99"):
                best = min(med_rtt("pingpong", p, q) or 1e9 for p in peers)
                mine = med_rtt("pingpong", "tpengine", q)
                print(f"  pingpong {q}: {f(mine)} us vs best peer {best:.1f}: "
                      f"{'ok' if mine is not None and mine <= best else 'MISSED'}")
        if "bulk1400" in workloads:
            best = max((med("bulk1400", p, "gbit_per_core") or 0) for p in peers)
            mine = med("bulk1400", "tpengine", "gbit_per_core")
            print(f"  bulk1400 Gbit/s per core: {f(mine, 2)} vs 2 x {best:.2f}: "
                  f"{'ok' if mine is not None and mine >= 2 * best else 'MISSED'}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"runs": {f"{w}/{t}": v for (w, t), v in runs.items()}, "sockperf": sp,
                       "idle": idle}, fh, indent=1)


if __name__ == "__main__":
    main()
