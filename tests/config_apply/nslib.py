"""Helpers for the apply tests: a private network namespace per test, kernel-state snapshots
(nft ruleset, ip rules, routes of both families) and process handling. Python stdlib only."""
import atexit
import os
import random
import signal
import subprocess
import sys
import time

SKIP = 77


def require_root():
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, nftables)")
        sys.exit(SKIP)
    probe = f"tpaprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        print("SKIP: cannot create a network namespace")
        sys.exit(SKIP)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


class Netns:
    """A network namespace with lo up, deleted (with every process we started in it) on exit."""

    def __init__(self, tag):
        self.name = f"tpa-{tag}-{os.getpid()}-{random.randrange(1 << 16):04x}"
        self.procs = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sys.exit(1))
        self.sh("ip link set lo up")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs = []
        if self.name:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self.name = None

    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, argv, check=False, env=None, timeout=60):
        r = subprocess.run(self.cmd(argv), capture_output=True, text=True, env=env,
                           timeout=timeout)
        if check and r.returncode != 0:
            fail(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def sh(self, script, check=True):
        return self.run(["sh", "-c", script], check=check)

    def spawn(self, argv, env=None, stdin=None):
        p = subprocess.Popen(self.cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=stdin, text=True, env=env)
        self.procs.append(p)
        return p

    def snapshot(self):
        """Everything tpengine may touch, as text, for byte-identity checks."""
        parts = []
        for c in ("nft list ruleset", "ip -4 rule", "ip -6 rule", "ip -4 route show table all",
                  "ip -6 route show table all"):
            parts.append(f"## {c}\n" + self.sh(c).stdout)
        return "\n".join(parts)

    def add_foreign_state(self):
        """Someone else's table, ip rules (one sharing priority 100 with another table) and
        routes in another table: all must survive whatever tpengine does."""
        self.sh("nft add table inet foreign; "
                "nft add chain inet foreign c '{ type filter hook prerouting priority 0; }'; "
                "nft add rule inet foreign c tcp dport 9 counter accept; "
                "nft add table ip tpengine_other")
        self.sh("ip rule add fwmark 0x2/0x2 lookup 200 priority 100; "
                "ip -6 rule add fwmark 0x1/0x1 lookup 201 priority 100; "
                "ip rule add from 203.0.113.7 lookup 200 priority 300; "
                "ip route add local default dev lo table 200; "
                "ip route add blackhole 198.51.100.0/24 table 200; "
                "ip -6 route add blackhole 2001:db8:9::/48 table 201")


def diff(a, b):
    import difflib
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), "before", "after"))


def expect_same(before, after, what):
    if before != after:
        fail(f"{what}: namespace changed\n{diff(before, after)}")


def wait_for_line(proc, needle, timeout=20):
    """Reads proc's output until a line contains needle; returns the lines read. Reads the
    pipe's fd directly (select + a buffered readline would miss lines already buffered)."""
    import selectors
    fd = proc.stdout.fileno()
    pending = getattr(proc, "_pending", b"")
    lines = []
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    try:
        while True:
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode(errors="replace") + "\n"
                lines.append(line)
                if needle in line:
                    proc._pending = pending
                    return lines
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
    finally:
        sel.close()
    proc._pending = pending
    fail(f"no line containing {needle!r} (exit {proc.poll()}):\n" + "".join(lines) +
         pending.decode(errors="replace"))


# --- tpengine itself -------------------------------------------------------------------------

TABLE = "tpa"


def write_config(path, port=50080, ports=(80, 443), rt=100, prio=100, table=TABLE,
                 extra_listener_port=None, upstream=None, transparent=True):
    """A small valid rule set: one tproxy rule from lan0 to listener `web`. max_connections
    stays below any fd limit a test machine has (above it the preflight warns)."""
    up = f"\n    upstream: {{to: \"{upstream}\"}}" if upstream else ""
    text = f"""workers: 1
routing: {{mark: 0x1, mask: 0x1, table: {rt}, priority: {prio}, bypass_mark: 0x2}}
nftables: {{table: {table}}}
listeners:
  - name: web
    address: "::"
    port: {port}
    transparent: {"true" if transparent else "false"}{up}
    max_connections: 1000
"""
    if extra_listener_port:
        text += f"""  - name: extra
    address: "::"
    port: {extra_listener_port}
    transparent: true
"""
    text += f"""rules:
  - name: lan-web
    interfaces: [lan0]
    ports: [{", ".join(str(p) for p in ports)}]
    action: tproxy
    listener: web
"""
    with open(path, "w") as f:
        f.write(text)
    return path


def start(ns, cfg, extra_args=(), env=None):
    """Starts `tpengine -c cfg` in ns and waits for its `running` line."""
    proc = ns.spawn([os.environ["TPENGINE"], "-c", cfg] + list(extra_args), env=env)
    wait_for_line(proc, "tpengine: running (")
    return proc


def stop(proc, sig=signal.SIGTERM, timeout=30):
    """Signals proc and returns (exit code, remaining output)."""
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def count_ours(snap, table=TABLE, rt=100, prio=100):
    """(tables, v4 rules, v6 rules, v4 routes, v6 routes) of ours in a snapshot."""
    sections = {}
    current = None
    for line in snap.splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        elif current:
            sections[current].append(line)
    rule = f"{prio}:\tfrom all fwmark 0x1/0x1 lookup {rt}"
    route = f"local default dev lo table {rt}"
    return (
        sum(1 for l in sections["nft list ruleset"] if l == f"table inet {table} {{"),
        sum(1 for l in sections["ip -4 rule"] if l.strip() == rule.strip()),
        sum(1 for l in sections["ip -6 rule"] if l.strip() == rule.strip()),
        sum(1 for l in sections["ip -4 route show table all"] if l.startswith(route)),
        sum(1 for l in sections["ip -6 route show table all"] if l.startswith(route)),
    )


def strip_ours(snap, table=TABLE, rt=100, prio=100):
    """The snapshot without tpengine's table, rules and routes: what must never change."""
    out = []
    skip = False
    rule = f"{prio}:\tfrom all fwmark 0x1/0x1 lookup {rt}"
    for line in snap.splitlines():
        if line == f"table inet {table} {{":
            skip = True
            continue
        if skip:
            if line == "}":
                skip = False
            continue
        if line.strip() == rule.strip() or line.startswith(f"local default dev lo table {rt}"):
            continue
        out.append(line)
    return "\n".join(out)


def nft_table(ns, table=TABLE):
    """`nft list table inet T` with counter values zeroed (they move with traffic)."""
    import re
    text = ns.sh(f"nft list table inet {table}").stdout
    return re.sub(r"packets \d+ bytes \d+", "packets 0 bytes 0", text)
