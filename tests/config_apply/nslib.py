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

    def spawn(self, argv, env=None):
        p = subprocess.Popen(self.cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
        self.procs.append(p)
        return p

    def snapshot(self):
        """Everything tpengine may touch, as text, for byte-identity checks."""
        parts = []
        for c in ("nft list ruleset", "ip rule", "ip -6 rule", "ip route show table all",
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
    """Reads proc's output until a line contains needle; returns all lines read."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    fail(f"no line containing {needle!r} (exit {proc.poll()}):\n" + "".join(lines))
