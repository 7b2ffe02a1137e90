#!/usr/bin/env python3
"""Side-by-side comparison of TCP relays with tpbench (run through compare.sh).

Targets: direct (no relay), tpengine, haproxy (mode tcp), haproxy-splice (option splice-auto),
haproxy-splice-all (option splice-request + splice-response),
nginx (stream), socat (fork). Every relay is pinned to CPU 1 (taskset), the tpbench client and
servers to CPU 0. Repetitions are interleaved (rep 1 of every workload x target, then rep 2...),
each cell reports the median and min-max. The relay's CPU time (utime+stime of its process tree,
from /proc/PID/stat, before and after each run) gives its cost per unit of work, so efficiency is
comparable even when the client is the bottleneck.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PEERS = ["haproxy", "haproxy-splice", "haproxy-splice-all", "nginx", "socat"]
ALL_TARGETS = ["direct", "tpengine"] + PEERS
RELAY_CPU = "1"
CLIENT_CPU = "0"

# name -> (tpbench arguments after --target, server kind, primary metric)
WORKLOADS = {
    "bulk1": (["throughput", "--connections", "1", "--direction", "up"], "sink", "gbit_s"),
    "bulk8": (["throughput", "--connections", "8", "--direction", "up"], "sink", "gbit_s"),
    "rr64": (["rr", "--connections", "64", "--size", "128"], "echo", "requests_per_s"),
    "pingpong": (["rr", "--connections", "1", "--size", "128"], "echo", "requests_per_s"),
    "connrate": (["connrate", "--concurrency", "16", "--size", "128"], "echo",
                 "connections_per_s"),
}


def find_binary(name, env, candidates):
    if os.environ.get(env):
        return os.environ[env]
    for c in candidates:
        p = os.path.join(REPO, c)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def tree_cpu_ticks(roots):
    """CPU ticks of the process trees under `roots`: each live process's own time plus what its
    reaped children left in cutime/cstime (socat forks one child per connection)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        _, own, reaped = stats[pid]
        total += own + reaped
        todo.extend(children.get(pid, []))
    return total


def tree_rss_kib(roots):
    """VmRSS summed over the process trees under `roots` (nginx: master + worker)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry))
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        try:
            total += rss_kib(pid)
        except OSError:
            pass
        todo.extend(parents.get(pid, []))
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Lab:
    """Starts and owns every process of the comparison; stop() ends exactly those."""

    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="tpbench-compare.")
        self.procs = []  # (name, Popen)
        self.targets = {}  # name -> {"echo": port, "sink": port, "pids": [..]}

    def prefix(self, cpu):
        """CPU pinning, and a raised priority so a busy shared machine disturbs the runs less."""
        pre = ["taskset", "-c", cpu]
        if self.args.rt:
            # SCHED_FIFO: other work on the machine cannot preempt the run (the kernel still
            # leaves it 5% of each CPU); opt-in, since it starves everything else meanwhile.
            pre = ["chrt", "-f", str(self.args.rt)] + pre
        elif self.args.nice:
            pre = ["nice", "-n", str(self.args.nice)] + pre
        return pre

    def spawn(self, name, argv, cpu, stdin=None):
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(self.prefix(cpu) + argv, stdout=log, stderr=subprocess.STDOUT,
                             stdin=stdin or subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for _, p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = []
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, name):
        try:
            with open(os.path.join(self.tmp, name + ".log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    # ---- servers and relays ----

    def start_servers(self):
        self.server_ports = {}
        for kind in ("echo", "sink"):
            port = free_port()
            p = self.spawn(f"server-{kind}", [self.args.tpbench, "serve", "--listen",
                                              f"127.0.0.1:{port}", "--mode", kind], CLIENT_CPU)
            wait_port(port, p, f"tpbench serve {kind}")
            self.server_ports[kind] = port
        self.targets["direct"] = dict(self.server_ports, pids=[])

    def start_target(self, name):
        s = self.server_ports
        ports = {"echo": free_port(), "sink": free_port()}
        pids = []
        if name == "tpengine":
            for kind in ("echo", "sink"):
                argv = [self.args.tpengine, "relay"] + self.args.tpengine_args + [
                    "-L", "127.0.0.1", str(ports[kind]), "127.0.0.1", str(s[kind])]
                p = self.spawn(f"tpengine-{kind}", argv, RELAY_CPU)
                pids.append(p.pid)
                wait_port(ports[kind], p, "tpengine " + " ".join(argv[1:]))
        elif name.startswith("haproxy"):
            cfg = os.path.join(self.tmp, name + ".cfg")
            with open(cfg, "w") as f:
                f.write("global\n  nbthread 1\n  maxconn 6000\n"
                        f"  pidfile {self.tmp}/{name}.pid\n"
                        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
                        "  timeout server 60s\n  maxconn 6000\n")
                if name == "haproxy-splice":
                    f.write("  option splice-auto\n")
                elif name == "haproxy-splice-all":
                    # splice-auto rarely engages on loopback; forcing it both ways is HAProxy's
                    # best bulk mode here.
                    f.write("  option splice-request\n  option splice-response\n")
                for kind in ("echo", "sink"):
                    f.write(f"frontend fe_{kind}\n  bind 127.0.0.1:{ports[kind]}\n"
                            f"  default_backend be_{kind}\n"
                            f"backend be_{kind}\n  server s 127.0.0.1:{s[kind]}\n")
            p = self.spawn(name, [self.args.haproxy, "-db", "-f", cfg], RELAY_CPU)
            pids.append(p.pid)
            for kind in ports:
                wait_port(ports[kind], p, name)
        elif name == "nginx":
            d = os.path.join(self.tmp, "nginx")
            os.makedirs(d, exist_ok=True)
            cfg = os.path.join(d, "nginx.conf")
            with open(cfg, "w") as f:
                f.write("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
                        "daemon off;\nworker_processes 1;\nworker_rlimit_nofile 20000;\n"
                        f"error_log {d}/error.log;\npid {d}/nginx.pid;\n"
                        "events { worker_connections 9500; }\nstream {\n")
                for kind in ("echo", "sink"):
                    f.write(f"  server {{ listen 127.0.0.1:{ports[kind]}; "
                            f"proxy_pass 127.0.0.1:{s[kind]}; }}\n")
                f.write("}\n")
            p = self.spawn(name, [self.args.nginx, "-p", d, "-e", f"{d}/error.log", "-c", cfg],
                           RELAY_CPU)
            pids.append(p.pid)
            for kind in ports:
                wait_port(ports[kind], p, name)
        elif name == "socat":
            for kind in ("echo", "sink"):
                p = self.spawn(f"socat-{kind}", [
                    self.args.socat, f"TCP-LISTEN:{ports[kind]},bind=127.0.0.1,reuseaddr,fork,"
                    "backlog=4096", f"TCP:127.0.0.1:{s[kind]}"], RELAY_CPU)
                pids.append(p.pid)
                wait_port(ports[kind], p, "socat")
        else:
            raise ValueError(name)
        self.targets[name] = dict(ports, pids=pids)

    # ---- one measurement ----

    def run_workload(self, target, workload, duration):
        argv_tail, kind, _ = WORKLOADS[workload]
        t = self.targets[target]
        argv = self.prefix(CLIENT_CPU) + [self.args.tpbench] + argv_tail[:1] + [
            "--target", f"127.0.0.1:{t[kind]}"] + argv_tail[1:] + [
            "--duration", str(duration), "--json"]
        before = tree_cpu_ticks(t["pids"]) if t["pids"] else 0
        res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        if t["pids"]:
            # Let forked relays (socat) finish and be reaped so their time lands in cutime.
            time.sleep(0.2)
        after = tree_cpu_ticks(t["pids"]) if t["pids"] else 0
        try:
            r = json.loads(res.stdout)
        except ValueError:
            return {"failed": True, "why": (res.stderr or res.stdout).strip()[-300:]}
        r["relay_cpu_s"] = (after - before) / CLK_TCK if t["pids"] else None
        r["exit"] = res.returncode
        return r

    # ---- memory ----

    def measure_memory(self, name, n_conns):
        """tpengine: RSS of a fresh `relay --workers 2`, idle, then holding n_conns idle relayed
        connections. Peers (haproxy, nginx): the same on the instance already running (warm)."""
        if name != "tpengine":
            t = self.targets[name]
            return self.hold_and_measure(t["pids"], t["echo"], n_conns)
        port = free_port()
        argv = [self.args.tpengine, "relay"] + self.args.memory_tpengine_args + [
            "-L", "127.0.0.1", str(port), "127.0.0.1", str(self.server_ports["echo"])]
        p = self.spawn("mem-tpengine", argv, RELAY_CPU)
        try:
            wait_port(port, p, "tpengine (memory)")
            time.sleep(0.5)
            return self.hold_and_measure([p.pid], port, n_conns)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)

    def hold_and_measure(self, pids, port, n_conns):
        idle = tree_rss_kib(pids)
        hold = subprocess.Popen(
            self.prefix(CLIENT_CPU) + [self.args.tpbench, "hold", "--target", f"127.0.0.1:{port}",
                                       "--connections", str(n_conns), "--duration", "120"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.procs.append(("hold", hold))
        line = hold.stderr.readline()
        held = int(line.split()[2]) if "holding" in line else 0
        time.sleep(0.5)
        loaded = tree_rss_kib(pids)
        os.killpg(hold.pid, signal.SIGTERM)
        hold.wait(timeout=30)
        time.sleep(0.5)  # let the relay close them before the next measurement
        return {"idle_rss_kib": idle, "loaded_rss_kib": loaded, "held": held,
                "bytes_per_conn": (loaded - idle) * 1024 / held if held else None,
                "hold_output": line.strip()}


# ---- summaries ----

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, workload):
    """Median/min/max of the primary metric plus derived efficiency figures."""
    _, _, metric = WORKLOADS[workload]
    ok = [r for r in runs if not r.get("failed")]
    out = {"runs": len(runs), "failed": len(runs) - len(ok)}
    if not ok:
        return out
    vals = [r[metric] for r in ok]
    out.update(value=statistics.median(vals), lo=min(vals), hi=max(vals))
    out["errors"] = sum(r.get("errors_total", 0) for r in ok)
    if "latency_us" in ok[0]:
        out["p50"] = med([r["latency_us"]["p50"] for r in ok])
        out["p99"] = med([r["latency_us"]["p99"] for r in ok])
    cpu = [r.get("relay_cpu_s") for r in ok]
    if all(c is not None for c in cpu):
        busy = [c / r["duration_s"] for c, r in zip(cpu, ok)]
        out["busy_core"] = statistics.median(busy)
        if metric == "gbit_s":
            per = [r[metric] / b for r, b in zip(ok, busy) if b > 0]
            out["per_core"] = med(per)  # Gbit/s per busy relay core
        else:
            units = "responses" if metric == "requests_per_s" else "ok"
            per = [c * 1e6 / r[units] for c, r in zip(cpu, ok) if r[units]]
            out["per_core"] = med(per)  # relay-core microseconds per request / connection
    return out


def fmt(v, digits=1):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def best_peer(summ, workload, key, higher_better, peers):
    vals = [(summ[(workload, p)].get(key), p) for p in peers if (workload, p) in summ]
    vals = [(v, p) for v, p in vals if v is not None]
    if not vals:
        return None, None
    return (max if higher_better else min)(vals)


def render(summ, memory, targets, workloads, meta):
    lines = []
    add = lines.append
    add(f"- Machine: {meta['machine']}")
    add(f"- Commit: {meta['commit']}  Date: {meta['date']}")
    add(f"- Command: {meta['command']}")
    add(f"- Machine state: {meta['load']}; every process at {meta['prio']}.")
    add(f"- Pinning: relay on CPU {RELAY_CPU}, tpbench client and servers on CPU {CLIENT_CPU}; "
        f"{meta['reps']} interleaved repetitions of {meta['duration']} s; median (min-max).")
    add("")
    peers = [p for p in targets if p in PEERS]
    units = {"gbit_s": "Gbit/s", "requests_per_s": "req/s", "connections_per_s": "conn/s"}
    add("| workload | metric | " + " | ".join(targets) + " |")
    add("|---|---|" + "---|" * len(targets))
    for w in workloads:
        metric = WORKLOADS[w][2]
        cells = []
        for t in targets:
            s = summ.get((w, t), {})
            if "value" not in s:
                cells.append("failed" if s.get("failed") else "-")
                continue
            c = f"{fmt(s['value'], 2)} ({fmt(s['lo'], 2)}-{fmt(s['hi'], 2)})"
            if s.get("errors"):
                c += f" err {s['errors']}"
            cells.append(c)
        add(f"| {w} | {units[metric]} | " + " | ".join(cells) + " |")
        if w in ("rr64", "pingpong", "connrate"):
            for q in ("p50", "p99"):
                add(f"| {w} | {q} us | " + " | ".join(
                    fmt(summ.get((w, t), {}).get(q)) for t in targets) + " |")
        if any(summ.get((w, t), {}).get("per_core") is not None for t in targets):
            label = "Gbit/s per busy relay core" if metric == "gbit_s" else (
                "relay-core us per request" if metric == "requests_per_s"
                else "relay-core us per connection")
            add(f"| {w} | {label} | " + " | ".join(
                fmt(summ.get((w, t), {}).get("per_core"), 2) for t in targets) + " |")
            add(f"| {w} | relay core busy | " + " | ".join(
                fmt(summ.get((w, t), {}).get("busy_core"), 2) for t in targets) + " |")
    add("")
    # Ratios of tpengine against direct and against the best peer for each figure.
    if "tpengine" in targets:
        add("| workload | figure | tpengine | vs direct | best peer | vs best peer |")
        add("|---|---|---|---|---|---|")
        for w in workloads:
            metric = WORKLOADS[w][2]
            figs = [("value", units[metric], True)]
            if w in ("rr64", "pingpong", "connrate"):
                figs += [("p50", "p50 us", False), ("p99", "p99 us", False)]
            figs.append(("per_core", "per busy core Gbit/s" if metric == "gbit_s"
                         else "relay-core us/unit", metric == "gbit_s"))
            te = summ.get((w, "tpengine"), {})
            di = summ.get((w, "direct"), {})
            for key, label, hb in figs:
                tv = te.get(key)
                dv = di.get(key)
                bv, bp = best_peer(summ, w, key, hb, peers)
                rd = f"{tv / dv:.2f}x" if tv and dv else "-"
                rb = f"{tv / bv:.2f}x" if tv and bv else "-"
                add(f"| {w} | {label} | {fmt(tv, 2)} | {rd} | "
                    f"{fmt(bv, 2)} {bp or ''} | {rb} |")
        add("")
    if memory:
        add("Memory: tpengine = a fresh `relay --workers 2`; peers = their instance of this run "
            "(warm, one worker), N limited by their configured maxconn.")
        add("")
        add("| memory | idle RSS KiB | RSS with N idle relayed conns KiB | N | bytes per conn |")
        add("|---|---|---|---|---|")
        for name, m in memory.items():
            if m:
                add(f"| {name} | {m['idle_rss_kib']} | {m['loaded_rss_kib']} | {m['held']} | "
                    f"{fmt(m['bytes_per_conn'], 0)} |")
        add("")
    return "\n".join(lines)


def bar_check(summ, memory, targets):
    """The bar of issue 5, figure by figure: (item, tpengine, threshold, verdict)."""
    rows = []
    peers = [p for p in targets if p in PEERS]

    def get(w, t, k):
        return summ.get((w, t), {}).get(k)

    def row(item, val, want, ok):
        verdict = "-" if val is None or want is None else ("met" if ok(val, want) else "MISSED")
        rows.append((item, val, want, verdict))

    ge = lambda v, w: v >= w  # noqa: E731
    le = lambda v, w: v <= w  # noqa: E731
    for w in ("bulk1", "bulk8"):
        hap = [get(w, p, "value") for p in ("haproxy", "haproxy-splice", "haproxy-splice-all")
               if p in peers]
        hap = [h for h in hap if h]
        te = get(w, "tpengine", "value")
        row(f"{w} >= 1.6 x HAProxy best (Gbit/s)", te, 1.6 * max(hap) if hap else None, ge)
        d = get(w, "direct", "value")
        row(f"{w} >= 0.85 x direct (Gbit/s)", te, 0.85 * d if d else None, ge)
        row(f"{w} >= 30 Gbit/s per busy relay core", get(w, "tpengine", "per_core"), 30.0, ge)
    d = get("rr64", "direct", "value")
    row("rr64 req/s >= 0.97 x direct", get("rr64", "tpengine", "value"),
        0.97 * d if d else None, ge)
    bv, _ = best_peer(summ, "rr64", "per_core", False, peers)
    row("rr64 relay us/req <= 0.75 x best peer", get("rr64", "tpengine", "per_core"),
        0.75 * bv if bv else None, le)
    bv, _ = best_peer(summ, "rr64", "p99", False, peers)
    row("rr64 p99 <= best peer (us)", get("rr64", "tpengine", "p99"), bv, le)
    for q in ("p50", "p99"):
        bv, _ = best_peer(summ, "pingpong", q, False, peers)
        row(f"pingpong {q} <= best peer (us)", get("pingpong", "tpengine", q), bv, le)
    bv, _ = best_peer(summ, "connrate", "value", True, peers)
    row("connrate conn/s >= best peer", get("connrate", "tpengine", "value"), bv, ge)
    bv, _ = best_peer(summ, "connrate", "per_core", False, peers)
    row("connrate relay us/conn <= 0.75 x best peer", get("connrate", "tpengine", "per_core"),
        0.75 * bv if bv else None, le)
    m = (memory or {}).get("tpengine")
    if m:
        row("memory bytes per idle relayed conn <= 2048", m["bytes_per_conn"], 2048, le)
        row("memory idle RSS, 2 workers < 8192 KiB", m["idle_rss_kib"], 8192,
            lambda v, w: v < w)
    return rows


def with_workers(argv, n):
    """argv with any --workers option replaced by --workers n."""
    out = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out + ["--workers", str(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition of 1 s, 2,000 idle conns")
    ap.add_argument("--reps", type=int, help="interleaved repetitions (default 5; --quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per run (default 2; --quick 1)")
    ap.add_argument("--only", default=",".join(ALL_TARGETS),
                    help="comma list of targets: " + ",".join(ALL_TARGETS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma list: " + ",".join(WORKLOADS))
    ap.add_argument("--memory-conns", type=int, default=10000,
                    help="idle relayed connections for the memory figure (capped by ulimit -n)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", help="also write the Markdown tables here")
    ap.add_argument("--json", help="write every run's raw result here")
    ap.add_argument("--nice", type=int, default=-10,
                    help="nice value for every process of the run (0: leave as is)")
    ap.add_argument("--rt", type=int, default=0, metavar="PRIO",
                    help="run every process SCHED_FIFO at PRIO (for a busy shared machine)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--tpbench", default=find_binary(
        "tpbench", "TPBENCH", ["build-bench/tools/tpbench/tpbench", "build/tools/tpbench/tpbench"]))
    ap.add_argument("--tpengine", default=find_binary(
        "tpengine", "TPENGINE", ["build-bench/tools/tpengine/tpengine",
                                 "build/tools/tpengine/tpengine"]))
    ap.add_argument("--tpengine-args", default="--workers 1",
                    help="extra tpengine relay arguments (default: --workers 1)")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--socat", default=shutil.which("socat") or "/usr/bin/socat")
    args = ap.parse_args()
    if args.quick:
        args.memory_conns = min(args.memory_conns, 2000)
    args.reps = args.reps or (1 if args.quick else 5)
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    # Each relayed connection costs the relay two descriptors; a container may forbid raising
    # the hard limit (no CAP_SYS_RESOURCE), so stay under it.
    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if args.memory_conns * 2 + 200 > nofile:
        args.memory_conns = (nofile - 200) // 2
        sys.stderr.write(f"compare: ulimit -n is {nofile}: memory measured with "
                         f"{args.memory_conns} idle connections\n")
    args.tpengine_args = args.tpengine_args.split()
    args.memory_tpengine_args = with_workers(args.tpengine_args, 2)
    targets = [t for t in args.only.split(",") if t]
    workloads = [w for w in args.workloads.split(",") if w]
    for t in targets:
        if t not in ALL_TARGETS:
            ap.error(f"unknown target {t}")
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    if not args.tpbench or not os.path.exists(args.tpbench):
        ap.error("tpbench not found: build it (cmake --build build-bench --target tpbench) "
                 "or pass --tpbench")
    if "tpengine" in targets and (not args.tpengine or not os.path.exists(args.tpengine)):
        ap.error("tpengine not found: build it or pass --tpengine, or leave it out with --only")
    if os.cpu_count() < 2:
        ap.error("needs at least 2 CPUs (relay on CPU 1, client and server on CPU 0)")

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    meta = {
        "machine": f"{os.cpu_count()} CPUs, {model}, kernel {platform.release()}",
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "bench/macro/compare.sh " + " ".join(sys.argv[1:]),
        "reps": args.reps,
        "load": "load average %.2f %.2f %.2f at start" % os.getloadavg(),
        "prio": f"SCHED_FIFO {args.rt}" if args.rt else f"nice {args.nice}",
        "duration": args.duration,
    }

    lab = Lab(args)
    stop_now = []

    def on_signal(signum, _frame):
        stop_now.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    runs = {}
    memory = {}
    try:
        lab.start_servers()
        for t in targets:
            if t != "direct":
                lab.start_target(t)
        total = args.reps * len(workloads) * len(targets)
        n = 0
        for rep in range(args.reps):
            # Rotate the target order each repetition so no target always runs first.
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for w in workloads:
                for t in order:
                    n += 1
                    if sys.stderr.isatty():
                        sys.stderr.write(f"\r[{n}/{total}] rep {rep + 1} {w} {t}          ")
                        sys.stderr.flush()
                    r = lab.run_workload(t, w, args.duration)
                    if r.get("failed"):
                        sys.stderr.write(f"\n{w} via {t} failed: {r['why']}\n")
                    runs.setdefault((w, t), []).append(r)
        if sys.stderr.isatty():
            sys.stderr.write("\r" + " " * 60 + "\r")
        if not args.no_memory and "tpengine" in targets:
            memory["tpengine"] = lab.measure_memory("tpengine", args.memory_conns)
        if not args.no_memory:
            # Peers: haproxy runs with maxconn 6000 and nginx with 9500 worker connections
            # (two per relayed connection), so they hold fewer.
            for peer in ("haproxy", "nginx"):
                if peer in targets:
                    memory[peer] = lab.measure_memory(peer, min(args.memory_conns, 4000))
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        lab.stop()
        return 130
    except RuntimeError as e:
        sys.stderr.write(f"compare: {e}\n")
        for name, _ in lab.procs:
            tail = lab.log_tail(name)
            if tail:
                sys.stderr.write(f"--- {name} log ---\n{tail}\n")
        lab.stop()
        return 1
    lab.stop()

    summ = {k: summarize(v, k[0]) for k, v in runs.items()}
    text = render(summ, memory, targets, workloads, meta)
    rows = bar_check(summ, memory, targets) if "tpengine" in targets else []
    if rows:
        text += "\n| bar (issue 5) | tpengine | threshold | verdict |\n|---|---|---|---|\n"
        for item, val, want, verdict in rows:
            text += f"| {item} | {fmt(val, 2)} | {fmt(want, 2)} | {verdict} |\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "memory": memory,
                       "runs": {f"{w}/{t}": v for (w, t), v in runs.items()}}, f, indent=1)
    # Exit 1 when some workload never succeeded through some target (the table shows which).
    dead = [f"{w} via {t}" for (w, t), s in summ.items() if "value" not in s]
    if dead:
        sys.stderr.write("compare: no successful run for " + ", ".join(dead) + "\n")
    return 1 if dead else 0

if __name__ == "__main__":
    sys.exit(main())
