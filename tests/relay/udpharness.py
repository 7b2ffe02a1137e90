"""UDP additions to relayharness for `tpengine relay -u` tests on loopback (python3 stdlib only):
free UDP ports, an upstream echo/sink server that records every datagram and its source, the
SIGUSR1 `udp:` counter lines, and the UDP end of a test (flows gone, fds back at baseline,
SIGTERM exits 0)."""

import os
import re
import selectors
import signal
import socket
import threading
import time

import relayharness as h


def free_udp_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port free for both UDP and TCP (the relay's readiness line is shared with TCP)."""
    for _ in range(50):
        p = h.free_port(family, host)
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.bind((host, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise h.TestFailure("no free UDP port")


class UdpServer:
    """Upstream on loopback: echoes (mode 'echo') or only records (mode 'sink') each datagram.
    `seen` holds (source, payload) for every datagram received, in arrival order."""

    def __init__(self, ctx, family=socket.AF_INET, host=None, mode="echo", port=0):
        self.host = host or ("::1" if family == socket.AF_INET6 else "127.0.0.1")
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((self.host, port))
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.seen = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        ctx.servers.append(self)

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                data, src = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.seen.append((src, data))
            if self.mode == "echo":
                try:
                    self.sock.sendto(data, src)
                except OSError:
                    pass

    def count(self):
        with self.lock:
            return len(self.seen)

    def sources(self):
        with self.lock:
            return {s[:2] for s, _ in self.seen}

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


UDP_LINE = re.compile(r"^  udp: (.*)$")


def udp_stats(r, timeout=10):
    """SIGUSR1, then the total block's udp counters: a dict with `ended` and `dropped` dicts.
    All zero when the dump has no udp lines (no UDP activity yet)."""
    before = r._sizes()
    os.kill(r.proc.pid, signal.SIGUSR1)

    def got():
        text = r._since(before)
        n = len(re.findall(r"^worker \d+: ", text, re.M))
        return text if "total:" in text and n >= r.workers else None
    text = h.wait_until(got, timeout, "the SIGUSR1 counter dump")
    time.sleep(0.05)
    text = r._since(before)
    lines = text[text.index("total:"):].splitlines()
    out = {"ended": {}, "dropped": {}}
    for l in lines[1:]:
        if not l.startswith("  "):
            break
        kv = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", l)}
        if l.startswith("  udp: "):
            out.update(kv)
        elif l.startswith("  udp_ended_by:"):
            out["ended"] = kv
        elif l.startswith("  udp_dropped:"):
            out["dropped"] = kv
    for k in ("flows_created", "flows_active", "expired", "evicted", "shed", "dgrams_up",
              "dgrams_down", "bytes_up", "bytes_down", "reply_sockets", "gso_sends", "gso_dgrams",
              "gro_recvs"):
        out.setdefault(k, 0)
    return out


def wait_udp(r, pred, timeout, what):
    last = [None]

    def p():
        last[0] = udp_stats(r)
        return pred(last[0])
    try:
        h.wait_until(p, timeout, what, interval=0.2)
    except h.TestFailure as e:
        raise h.TestFailure(f"{e}; last udp counters: {last[0]}")
    return last[0]


def check_udp_balance(u):
    ended = sum(u["ended"].values())
    h.check(u["flows_created"] == u["flows_active"] + ended,
            f"udp balance broken: created={u['flows_created']} active={u['flows_active']} ended={ended}")


def finish(r, timeout=20):
    """The UDP end of a test: every flow gone (expired or ended), the fd count back at the
    baseline, SIGTERM exits 0. Returns the last udp counters."""
    u = wait_udp(r, lambda u: u["flows_active"] == 0, timeout, "udp flows_active=0")
    check_udp_balance(u)
    h.wait_until(lambda: r.fd_count() == r.baseline_fds, timeout,
                 f"fd count back at the baseline {r.baseline_fds} (now {r.fd_count()})")
    h.log(f"udp counters: {u}; fds {r.fd_count()} = baseline")
    rc = r.stop()
    h.check(rc == 0, f"tpengine exited {rc} after SIGTERM:\n{r.output()[-2000:]}")
    return u


def client(family=socket.AF_INET, host=None, timeout=5):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # bursts: loss is not under test
    if host:
        s.bind((host, 0))
    return s
