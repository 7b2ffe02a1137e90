"""Process-level harness for `tpengine relay` tests on loopback (python3 stdlib only).

Starts the relay on free ports, provides Python peers (thread and selector servers, clients),
reads the SIGUSR1 counters, and ends every test with the leak check (fd count back at the
baseline, no relay socket left open or in CLOSE_WAIT) and the counter balance
(accepted = active + closed, in total and per worker).
"""

import argparse
import ctypes
import errno
import hashlib
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TCP_CLOSE_WAIT = 0x08
TCP_LISTEN = 0x0A
TCP_TIME_WAIT = 0x06
TCP_FIN_WAIT2 = 0x05

V4 = (socket.AF_INET, "127.0.0.1")
V6 = (socket.AF_INET6, "::1")


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns a true value; fails the test after `timeout` seconds.
    Timeouts here only catch hangs: they are never the property under test."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TestFailure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def dead_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port nothing listens on (connects to it are refused)."""
    return free_port(family, host)


# ---------------------------------------------------------------- /proc socket inspection


def _proc_net_tcp():
    """Yields (local_port, remote_port, state, inode) for every TCP socket, v4 and v6."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            if len(p) < 10:
                continue
            lport = int(p[1].rsplit(":", 1)[1], 16)
            rport = int(p[2].rsplit(":", 1)[1], 16)
            yield lport, rport, int(p[3], 16), int(p[9])


def fd_targets(pid):
    out = {}
    d = f"/proc/{pid}/fd"
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        try:
            out[int(n)] = os.readlink(f"{d}/{n}")
        except OSError:
            pass
    return out


def socket_inodes(pid):
    s = set()
    for t in fd_targets(pid).values():
        m = re.match(r"socket:\[(\d+)\]", t)
        if m:
            s.add(int(m.group(1)))
    return s


# ---------------------------------------------------------------- the relay process


STAT_LINE = re.compile(r"^(total|worker (\d+)): (.*)$")


def parse_stats(text):
    """Parses the LAST complete counter dump in `text` (see engine/stats.cc)."""
    lines = text.splitlines()
    starts = [i for i, l in enumerate(lines) if l.startswith("total: ")]
    if not starts:
        return None
    result = None
    for st in reversed(starts):
        blocks = {"workers": {}}
        cur = None
        for l in lines[st:]:
            m = STAT_LINE.match(l)
            if m:
                if m.group(1) == "total" and cur is not None:
                    break  # the next dump
                kv = dict(re.findall(r"(\w+)=(\d+)", m.group(3)))
                cur = {k: int(v) for k, v in kv.items()}
                cur["closed_by"] = {}
                if m.group(1) == "total":
                    blocks["total"] = cur
                else:
                    blocks["workers"][int(m.group(2))] = cur
            elif l.strip().startswith("closed_by:") and cur is not None:
                kv = dict(re.findall(r"(\w+)=(\d+)", l.split(":", 1)[1]))
                cur["closed_by"] = {k: int(v) for k, v in kv.items()}
            elif l.strip().startswith("shed:") and cur is not None:  # shedding counters
                cur.update({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", l.split(":", 1)[1])})
            elif cur is not None and not l.startswith(" "):
                break
        if "total" in blocks:
            result = blocks
            break
    return result


class Relay:
    """One `tpengine relay` process. Output goes to files, so a test never blocks on a pipe."""

    def __init__(self, ctx, args, family=socket.AF_INET, host=None, upstream_ports=(), nofile=None,
                 cgroup_procs=None):
        self.ctx = ctx
        self.args = [str(a) for a in args]
        self.family = family
        self.host = host or ("::1" if family == socket.AF_INET6 else "127.0.0.1")
        self.upstream_ports = set(upstream_ports)
        self.proc = None
        self.port = None
        self.workers = None
        self.baseline_fds = None
        self.dir = tempfile.mkdtemp(prefix="tprelay.")
        self.err_path = os.path.join(self.dir, "stderr")
        self.out_path = os.path.join(self.dir, "stdout")
        self.returncode = None
        self.standin = ctx.standin
        self.nofile = nofile
        self.cgroup_procs = cgroup_procs  # a cgroup's cgroup.procs: the relay starts in it

    # -- output
    def output(self):
        text = ""
        for p in (self.err_path, self.out_path):
            try:
                with open(p, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def _read(self, p):
        try:
            with open(p, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _sizes(self):
        return len(self._read(self.err_path)), len(self._read(self.out_path))

    def _since(self, sizes):
        return self._read(self.err_path)[sizes[0]:] + "\n" + self._read(self.out_path)[sizes[1]:]

    def stderr(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- life
    def start(self, expect_ready=True):
        cmd = self._command()
        self._err = open(self.err_path, "w")
        self._out = open(self.out_path, "w")
        log("start: " + " ".join(cmd))
        n = self.nofile
        procs = self.cgroup_procs

        def pre():
            # the relay dies with the test process, even if that is killed (ctest timeout)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if n:
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            if procs:
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=pre)
        self.ctx.relays.append(self)
        if not expect_ready:
            return self
        if self.standin:
            self.port = int(self._positional()[0])
            self.workers = 1
            wait_until(self._standin_ready, 10, "socat to listen")
        else:
            def ready():
                if self.proc.poll() is not None:
                    raise TestFailure(f"tpengine exited with {self.proc.returncode} before listening:\n"
                                      + self.output())
                m = re.search(r"relay listening on (\S+):(\d+) \((\d+) workers?\)", self.stderr())
                return m
            m = wait_until(ready, 15, "'relay listening on' on stderr")
            self.port = int(m.group(2))
            self.workers = int(m.group(3))
        self.baseline_fds = self._stable_fd_count()
        log(f"relay pid {self.proc.pid} on port {self.port}, {self.workers} workers, "
            f"baseline {self.baseline_fds} fds")
        return self

    def _positional(self):
        out = []
        skip = False
        for a in self.args:
            if skip:
                skip = False
                continue
            if a in ("-L", "--workers", "--connect-timeout", "--idle-timeout", "--half-closed-timeout",
                     "--max-connections", "--mark", "--drain-timeout", "--metrics", "--control",
                     "--log-level", "--log-connections"):
                skip = True
                continue
            if a.startswith("-"):
                continue
            out.append(a)
        return out

    def _command(self):
        if not self.standin:
            return [self.ctx.tpengine, "relay"] + self.args
        # socat stand-in, only to check the harness itself: no counters, FIN instead of RST.
        pos = self._positional()
        lport, host = pos[0], pos[1]
        rport = pos[2] if len(pos) > 2 else lport
        lhost = self.args[self.args.index("-L") + 1] if "-L" in self.args else self.host
        if ":" in lhost:
            listen = f"TCP6-LISTEN:{lport},bind=[{lhost}],reuseaddr,fork,backlog=4096"
        else:
            listen = f"TCP4-LISTEN:{lport},bind={lhost},reuseaddr,fork,backlog=4096"
        target = f"TCP6:[{host}]:{rport}" if ":" in host else f"TCP4:{host}:{rport}"
        return ["socat", listen, target]

    def _standin_ready(self):
        return any(lp == self.port and st == TCP_LISTEN for lp, _, st, _ in _proc_net_tcp())

    def pid(self):
        return self.proc.pid

    def fd_count(self):
        return len(fd_targets(self.proc.pid))

    def _stable_fd_count(self):
        if self.standin:
            return 0
        last, since = None, time.monotonic()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            n = self.fd_count()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > 0.3:
                break
            time.sleep(0.05)
        return last

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            p = f.read().rsplit(")", 1)[1].split()
        return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")

    def addr(self):
        return (self.host, self.port)

    def alive(self):
        return self.proc.poll() is None

    # -- counters
    def stats(self, timeout=10):
        """Sends SIGUSR1 and returns the parsed dump that follows it."""
        if self.standin:
            return None
        check(self.alive(), f"tpengine died (rc {self.proc.returncode}):\n{self.output()[-3000:]}")
        before = self._sizes()
        os.kill(self.proc.pid, signal.SIGUSR1)

        t0 = time.monotonic()

        def got():
            text = self._since(before)
            if "total:" not in text:
                return None
            n = len(re.findall(r"^worker \d+: ", text, re.M))
            # every worker's block, or (if a build prints none) the total after a short wait
            return text if n >= self.workers or time.monotonic() - t0 > 1.0 else None
        try:
            wait_until(got, timeout, "the SIGUSR1 counter dump")
        except TestFailure:
            raise TestFailure("no counter dump after SIGUSR1; output was:\n" + self.output()[-2000:])
        time.sleep(0.05)
        text = self._since(before)
        st = parse_stats(text)
        check(st is not None, "cannot parse the SIGUSR1 counter dump:\n" + text)
        return st

    def counter(self, st, name):
        return st["total"].get(name, 0)

    def closed_by(self, st, cause):
        return st["total"]["closed_by"].get(cause, 0)

    def wait_stats(self, pred, timeout, what):
        if self.standin:
            return None
        last = [None]

        def p():
            last[0] = self.stats()
            return pred(last[0])
        try:
            wait_until(p, timeout, what, interval=0.2)
        except TestFailure as e:
            raise TestFailure(f"{e}; last counters: {last[0]}")
        return last[0]

    def check_balance(self, st):
        if st is None:
            return
        blocks = [("total", st["total"])] + [(f"worker {k}", v) for k, v in sorted(st["workers"].items())]
        for name, b in blocks:
            closed = sum(b["closed_by"].values())
            check(b.get("closed", closed) == closed,
                  f"{name}: closed={b.get('closed')} but closed_by sums to {closed}: {b}")
            check(b["accepted"] == b["active"] + b.get("closed", closed),
                  f"counter balance broken in {name}: accepted={b['accepted']} active={b['active']} "
                  f"closed={b.get('closed')}")
        if st["workers"]:
            check(sum(w["accepted"] for w in st["workers"].values()) == st["total"]["accepted"],
                  f"worker accepted counts do not sum to the total: {st}")

    # -- leak check
    def relay_sockets(self):
        """Relay-side TCP sockets still open: its accepted sockets (local port = listen port, not
        LISTEN) and its upstream sockets (remote port = an upstream port), plus any socket in the
        process's fd table. Orphans and TIME_WAIT have inode 0 and do not count."""
        own = socket_inodes(self.proc.pid) if not self.standin else set()
        tests_own = socket_inodes(os.getpid())  # e.g. a test's own sockets to the upstream port
        found = []
        for lport, rport, state, inode in _proc_net_tcp():
            if inode == 0 or inode in tests_own:
                continue
            mine = inode in own
            by_port = (lport == self.port and state != TCP_LISTEN) or rport in self.upstream_ports
            if mine and state == TCP_LISTEN:
                continue
            if mine or by_port:
                found.append((lport, rport, state, inode))
        return found

    def fin_wait2(self):
        """Relay-side sockets in FIN_WAIT2, orphans included (they have inode 0)."""
        return [(lp, rp, st) for lp, rp, st, _ in _proc_net_tcp()
                if st == TCP_FIN_WAIT2 and ((lp == self.port) or rp in self.upstream_ports)]

    def close_wait(self):
        return [s for s in self.relay_sockets() if s[2] == TCP_CLOSE_WAIT]

    def leak_check(self, timeout=10):
        if self.standin:  # socat forks: only the port-based socket check applies
            wait_until(lambda: not self.relay_sockets(), timeout, "no relay socket open")
            return
        check(self.alive(), f"tpengine died (rc {self.proc.returncode}):\n{self.output()[-3000:]}")

        def ok():
            return self.fd_count() == self.baseline_fds and not self.relay_sockets() and not self.fin_wait2()
        try:
            wait_until(ok, timeout, "fd count back at baseline and no relay socket open", interval=0.1)
        except TestFailure:
            cw = self.close_wait()
            fds = fd_targets(self.proc.pid)
            raise TestFailure(
                f"LEAK: fd count {len(fds)} (baseline {self.baseline_fds}); "
                f"relay sockets in FIN_WAIT2 (orphans too): {self.fin_wait2()[:10]}; "
                f"relay sockets still open (lport, rport, state, inode): {self.relay_sockets()[:20]}; "
                f"in CLOSE_WAIT: {len(cw)}; fds: {sorted(fds.items())[:60]}")
        log(f"leak check ok: {self.fd_count()} fds = baseline, no relay socket open, 0 CLOSE_WAIT, 0 FIN_WAIT2")

    def finish(self, expect_accepted=None, timeout=15):
        """The standard end of a test: all connections gone (active 0), counter balance, leak
        check, then SIGTERM and exit 0. Returns the last counters."""
        st = None
        if not self.standin:
            st = self.wait_stats(lambda s: s["total"]["active"] == 0, timeout, "active=0")
            self.check_balance(st)
            if expect_accepted is not None:
                check(st["total"]["accepted"] == expect_accepted,
                      f"accepted={st['total']['accepted']}, expected {expect_accepted}")
            log(f"counters: {st['total']}")
        self.leak_check()
        if not self.standin:
            st2 = self.stats()
            self.check_balance(st2)
        rc = self.stop()
        if not self.standin:
            check(rc == 0, f"tpengine exited {rc} after SIGTERM, expected 0:\n{self.output()[-2000:]}")
        return st

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TestFailure(f"tpengine did not exit within {timeout}s of SIGTERM")
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def connect(self, timeout=20):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.addr())
        return s


# ---------------------------------------------------------------- peers


class ThreadServer:
    """Listening socket; each accepted connection runs handler(conn, index) on its own thread.
    Exceptions in handlers are recorded and re-raised by check()."""

    def __init__(self, ctx, handler, family=socket.AF_INET, host=None, backlog=1024, port=0):
        self.ctx = ctx
        self.handler = handler
        host = host or ("::1" if family == socket.AF_INET6 else "127.0.0.1")
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.active = 0
        self.errors = []
        self.results = {}
        self.lock = threading.Lock()
        self.closing = False
        self.conns = []
        self.threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        ctx.servers.append(self)

    def _accept_loop(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            idx = len(self.threads)
            with self.lock:
                self.active += 1
                self.conns.append(c)
            t = threading.Thread(target=self._run, args=(c, idx), daemon=True)
            t.start()
            self.threads.append(t)
            with self.lock:
                self.accepted += 1  # counted once its thread is listed, so join() sees it

    def _run(self, c, idx):
        try:
            c.settimeout(30)
            r = self.handler(c, idx)
            with self.lock:
                self.results[idx] = r
        except Exception as e:  # noqa: BLE001 - recorded, reported by check()
            with self.lock:
                self.errors.append(f"conn {idx}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.active -= 1

    def join(self, timeout=30, connections=1):
        """Waits for `connections` accepted connections, then for every handler to return."""
        end = time.monotonic() + timeout
        wait_until(lambda: self.accepted >= connections, timeout,
                   f"the server to accept {connections} connection(s) (has {self.accepted})")
        for t in list(self.threads):
            t.join(max(0.1, end - time.monotonic()))
        check(not any(t.is_alive() for t in self.threads), "server handlers did not finish")

    def check(self):
        check(not self.errors, "server handler errors:\n" + "\n".join(self.errors[:5]))

    def close(self):
        self.closing = True
        try:
            self.sock.close()
        except OSError:
            pass


class EchoServer:
    """Selector-based echo server for many connections. On EOF from the peer it sends what is
    left, then closes. Records per-connection byte counts."""

    def __init__(self, ctx, family=socket.AF_INET, host=None, backlog=4096):
        host = host or ("::1" if family == socket.AF_INET6 else "127.0.0.1")
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.accepted = 0
        self.active = 0
        self.errors = []
        self.closing = False
        self.r, self.w = os.pipe()
        self.sel.register(self.r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        ctx.servers.append(self)

    def _loop(self):
        conns = {}
        while not self.closing:
            for key, ev in self.sel.select(0.5):
                if key.data == "wake":
                    return self._cleanup(conns)
                if key.data is None:
                    while True:
                        try:
                            c, _ = self.sock.accept()
                        except (BlockingIOError, OSError):
                            break
                        c.setblocking(False)
                        st = {"buf": bytearray(), "eof": False}
                        conns[c] = st
                        self.accepted += 1
                        self.active += 1
                        self.sel.register(c, selectors.EVENT_READ, st)
                    continue
                c, st = key.fileobj, key.data
                try:
                    if ev & selectors.EVENT_READ and not st["eof"]:
                        d = c.recv(262144)
                        if d:
                            st["buf"] += d
                        else:
                            st["eof"] = True
                    if st["buf"]:
                        n = c.send(st["buf"])
                        del st["buf"][:n]
                except BlockingIOError:
                    pass
                except OSError as e:
                    self.errors.append(f"{type(e).__name__}: {e}")
                    self._drop(c, conns)
                    continue
                if st["eof"] and not st["buf"]:
                    self._drop(c, conns)
                    continue
                want = (0 if st["eof"] or len(st["buf"]) > 1 << 20 else selectors.EVENT_READ)
                want |= selectors.EVENT_WRITE if st["buf"] else 0
                self.sel.modify(c, want or selectors.EVENT_READ, st)
        self._cleanup(conns)

    def _drop(self, c, conns):
        self.sel.unregister(c)
        c.close()
        del conns[c]
        self.active -= 1

    def _cleanup(self, conns):
        for c in list(conns):
            c.close()

    def close(self):
        self.closing = True
        os.write(self.w, b"x")
        self.thread.join(5)
        self.sock.close()
        os.close(self.r)
        os.close(self.w)


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(1 << 20, n - len(buf)))
        if not d:
            raise TestFailure(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return bytes(buf)


def recv_to_end(s, limit=1 << 30):
    """Reads until EOF or reset. Returns (data, how) with how in {'eof', 'reset', 'timeout'}."""
    buf = bytearray()
    while len(buf) <= limit:
        try:
            d = s.recv(1 << 20)
        except ConnectionResetError:
            return bytes(buf), "reset"
        except socket.timeout:
            return bytes(buf), "timeout"
        except OSError as e:
            if e.errno == errno.ECONNRESET:
                return bytes(buf), "reset"
            raise
        if not d:
            return bytes(buf), "eof"
        buf += d
    return bytes(buf), "limit"


def run_limited(n, fn, at_once, join_s):
    """Calls fn(0) .. fn(n - 1), each in its own thread, at most `at_once` at a time; returns how
    many threads still run after waiting up to `join_s` s for each."""
    sem = threading.Semaphore(at_once)

    def limited(i):
        try:
            fn(i)
        finally:
            sem.release()
    threads = []
    for i in range(n):
        sem.acquire()
        t = threading.Thread(target=limited, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(join_s)
    return sum(t.is_alive() for t in threads)


def send_in_thread(s, data, shut_wr=False):
    """Sends data on its own thread (so the caller can read at the same time)."""
    res = {}

    def run():
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
            res["ok"] = True
        except Exception as e:  # noqa: BLE001
            res["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.res = res
    return t


def rst_close(s):
    """Closes with SO_LINGER 0: the kernel sends a RST."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


# ---------------------------------------------------------------- runner


class Context:
    def __init__(self, tpengine, standin):
        self.tpengine = tpengine
        self.standin = standin
        self.relays = []
        self.servers = []

    def relay(self, args, **kw):
        return Relay(self, args, **kw)

    def cleanup(self, keep_output=False):
        for r in self.relays:
            r.kill()
            for f in (getattr(r, "_err", None), getattr(r, "_out", None)):
                if f:
                    f.close()
            if not keep_output:
                shutil.rmtree(r.dir, ignore_errors=True)
        for s in self.servers:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass


def raise_nofile(n=20000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(test, time_limit=110):
    """Runs test(ctx). Exit 0 on pass, 1 on failure; the relay is always killed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--tpengine", required=True)
    ap.add_argument("--standin", choices=["socat"], help="check the harness against socat")
    a = ap.parse_args()
    raise_nofile()
    ctx = Context(os.path.abspath(a.tpengine) if not a.standin else None, a.standin)

    def on_alarm(*_):
        raise TestFailure(f"test exceeded its {time_limit}s limit")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(time_limit)
    name = os.path.basename(sys.argv[0])
    rc = 1
    try:
        test(ctx)
        rc = 0
        print(f"PASS {name}", flush=True)
    except TestFailure as e:
        print(f"FAIL {name}: {e}", flush=True)
    except Exception:  # noqa: BLE001
        print(f"FAIL {name}: unexpected exception\n{traceback.format_exc()}", flush=True)
    finally:
        signal.alarm(0)
        if rc != 0:
            for r in ctx.relays:
                out = r.output()
                if out:
                    print(f"--- tpengine output (last 3000 chars, {r.dir}):\n{out[-3000:]}", flush=True)
        ctx.cleanup(keep_output=rc != 0)  # a failed run keeps the relay's output for a look
    sys.exit(rc)


# ---------------------------------------------------------------- a small request protocol

HDR = 9  # mode byte + 8-byte big-endian length


def proto_handler(c, idx):
    """E: echo LEN bytes as they come; D: send LEN random bytes then FIN; U: read LEN bytes,
    answer b'ok' then FIN. Returns (mode, sha of what went each way)."""
    h = recv_exact(c, HDR)
    mode, n = h[:1], int.from_bytes(h[1:], "big")
    if mode == b"E":
        got = 0
        hsh = hashlib.sha256()
        while got < n:
            d = c.recv(min(1 << 20, n - got))
            if not d:
                raise TestFailure(f"echo: EOF after {got} of {n} bytes")
            hsh.update(d)
            c.sendall(d)
            got += len(d)
        return ("E", hsh.hexdigest())
    if mode == b"D":
        data = os.urandom(n)
        c.sendall(data)
        return ("D", hashlib.sha256(data).hexdigest())
    if mode == b"U":
        data = recv_exact(c, n)
        c.sendall(b"ok")
        return ("U", hashlib.sha256(data).hexdigest())
    raise TestFailure(f"bad mode {mode!r}")


def proto_client(relay, mode, n, server=None):
    """One connection through the relay doing `mode` with n bytes; checks bytes and the clean
    end (EOF). Returns (bytes up, bytes down) as the relay should count them."""
    s = relay.connect()
    try:
        hdr = mode.encode() + n.to_bytes(8, "big")
        if mode == "E":
            data = os.urandom(n)
            t = send_in_thread(s, hdr + data)
            back = recv_exact(s, n) if n else b""
            t.join(30)
            check("ok" in t.res, f"echo send failed: {t.res}")
            check(back == data, f"echo of {n} bytes differs: sent {sha(data)} got {sha(back)} ({len(back)} bytes)")
            s.shutdown(socket.SHUT_WR)
            rest, how = recv_to_end(s)
            check(rest == b"" and how == "eof", f"after echo expected EOF, got {how} with {len(rest)} bytes")
            return HDR + n, n
        if mode == "D":
            s.sendall(hdr)
            data, how = recv_to_end(s)
            check(how == "eof", f"download ended with {how} after {len(data)} of {n} bytes")
            check(len(data) == n, f"download got {len(data)} of {n} bytes")
            if server is not None:
                server.expect_sha(hashlib.sha256(data).hexdigest(), "D")
            return HDR, n
        if mode == "U":
            data = os.urandom(n)
            s.sendall(hdr + data)
            ans, how = recv_to_end(s)
            check(ans == b"ok" and how == "eof", f"upload answer {ans!r} ({how})")
            if server is not None:
                server.expect_sha(hashlib.sha256(data).hexdigest(), "U")
            return HDR + n, 2
        raise TestFailure(mode)
    finally:
        s.close()


class ProtoServer(ThreadServer):
    def __init__(self, ctx, family=socket.AF_INET, **kw):
        super().__init__(ctx, proto_handler, family=family, **kw)

    def expect_sha(self, digest, mode):
        def found():
            with self.lock:
                return any(r == (mode, digest) for r in self.results.values())
        wait_until(found, 10, f"the server to see the same {mode} payload (sha {digest[:16]})")


def unacked(s):
    """Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ)."""
    import fcntl
    import struct
    return struct.unpack("i", fcntl.ioctl(s.fileno(), 0x5411, b"\0\0\0\0"))[0]


def wait_acked(s, timeout=10):
    wait_until(lambda: unacked(s) == 0, timeout, "the peer to acknowledge every byte sent")


def send_then_rst(s, data, settle=0.5, timeout=10):
    """Sends data (as much as the path takes), waits until the peer has acknowledged all of it or
    the acknowledged count stops moving, then resets. Returns the count acknowledged: those bytes
    reached the relay, so the relay must deliver at least them."""
    s.setblocking(False)
    sent = 0
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        if sent < len(data):
            try:
                sent += s.send(data[sent:sent + 65536])
                continue
            except BlockingIOError:
                pass
        q = unacked(s)
        if sent == len(data) and q == 0:
            break
        if (sent, q) != last:
            last, since = (sent, q), time.monotonic()
        elif time.monotonic() - since > settle:
            break
        time.sleep(0.01)
    acked = sent - unacked(s)
    rst_close(s)
    return acked


def connect_and_read(relay, timeout=10):
    """Connects and reads to the end without sending. A reset that arrives before connect()
    returns (the relay accepted and reset at once) also counts as 'reset'."""
    s = socket.socket(relay.family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(relay.addr())
        except ConnectionResetError:
            return b"", "reset"
        return recv_to_end(s)
    finally:
        s.close()
