"""tpengine as a service, in a private network namespace:
  notify  a fake NOTIFY_SOCKET (abstract name, as systemd may hand out) sees READY=1 only once
          the table is in, then RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a SIGHUP,
          then STOPPING=1, in that order (a path socket: abstract names are per network
          namespace); `tpengine relay`, in this namespace, notifies an abstract '@' name.
  caps    started as root with `user: nobody`, every thread of tpengine holds only
          CAP_NET_ADMIN and CAP_NET_RAW (effective, permitted, bounding; nothing inheritable or
          ambient) and runs as nobody; it still reloads a changed file (new port in the table)
          and still stops cleanly, leaving nothing behind. A listener below port 1024 adds
          CAP_NET_BIND_SERVICE and nothing else.
  ambient the packaged unit's set-up without systemd: started as nobody with only ambient
          CAP_NET_ADMIN and CAP_NET_RAW (setpriv, as AmbientCapabilities= does), --check
          passes, the rules go in, a reload works and the stop removes everything."""
import os
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "config_apply"))
import nslib  # noqa: E402

CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW = 10, 12, 13
NET = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)


def listen_notify(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(20)
    return s


def recv_state(sock, what):
    try:
        return sock.recv(4096).decode()
    except socket.timeout:
        nslib.fail(f"no notification while waiting for {what}")


def proc_status(pid):
    """{tid: {field: value}} for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        out[tid] = fields
    return out


def check_caps(pid, want, uid=None):
    """`ip netns exec` execs tpengine in place, so the Popen pid is tpengine's."""
    threads = proc_status(pid)
    if len(threads) < 2:
        nslib.fail(f"expected the main thread and workers, got {len(threads)} thread(s)")
    for tid, st in threads.items():
        got = {k: int(st[k], 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")}
        expect = {"CapEff": want, "CapPrm": want, "CapBnd": want, "CapInh": 0, "CapAmb": 0}
        if got != expect:
            nslib.fail(f"thread {tid} ({st.get('Name')}): capabilities {got}, expected {expect}")
        if uid is not None and st["Uid"].split() != [str(uid)] * 4:
            nslib.fail(f"thread {tid}: Uid {st['Uid']}, expected {uid} everywhere")


def notify_test(tmp):
    cfg = nslib.write_config(os.path.join(tmp, "proxy.yaml"))
    ns = nslib.Netns("notify")
    before = ns.snapshot()
    path = os.path.join(tmp, "notify.sock")
    sock = listen_notify(path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    p = ns.spawn([os.environ["TPENGINE"], "-c", cfg], env=env)
    ready = recv_state(sock, "READY=1")
    if not ready.startswith("READY=1"):
        nslib.fail("first notification is not READY=1: " + ready)
    if "table inet tpa" not in ns.sh("nft list tables").stdout:
        nslib.fail("READY=1 came before the table was in")
    nslib.wait_for_line(p, "tpengine: running (")

    nslib.write_config(cfg, ports=(80, 443, 8080))
    p.send_signal(signal.SIGHUP)
    reloading = recv_state(sock, "RELOADING=1")
    if not reloading.startswith("RELOADING=1\nMONOTONIC_USEC="):
        nslib.fail("expected RELOADING=1 with MONOTONIC_USEC, got " + repr(reloading))
    states = [recv_state(sock, "READY=1 after reload")]
    while not states[-1].startswith("READY=1"):
        states.append(recv_state(sock, "READY=1 after reload"))
    if "8080" not in nslib.nft_table(ns):
        nslib.fail("READY=1 after reload, but the new port is not in the table")

    p.send_signal(signal.SIGTERM)
    stopping = recv_state(sock, "STOPPING=1")
    if stopping != "STOPPING=1":
        nslib.fail("expected STOPPING=1, got " + repr(stopping))
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop")

    # The relay, with an abstract name, on loopback here (port 0 is not allowed: a free port).
    name = f"tp-notify-{os.getpid()}"
    psock = listen_notify("\0" + name)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    r = subprocess.Popen([os.environ["TPENGINE"], "relay", "-L", "127.0.0.1", str(port),
                          "127.0.0.1", "9"], env=dict(os.environ, NOTIFY_SOCKET="@" + name))
    ns.procs.append(r)
    got = recv_state(psock, "relay READY=1")
    if not got.startswith("READY=1"):
        nslib.fail("relay: expected READY=1, got " + repr(got))
    check_caps(r.pid, 0)  # a plain relay needs no capability at all
    r.send_signal(signal.SIGTERM)
    if recv_state(psock, "relay STOPPING=1") != "STOPPING=1":
        nslib.fail("relay: no STOPPING=1")
    r.wait(timeout=30)
    print("notify: ok")


def caps_test(tmp):
    os.chmod(tmp, 0o755)  # the reload reads the file as nobody
    cfg = nslib.write_config(os.path.join(tmp, "caps.yaml"))
    with open(cfg, "a") as f:
        f.write("user: nobody\n")
    os.chmod(cfg, 0o644)
    ns = nslib.Netns("caps")
    before = ns.snapshot()
    p = nslib.start(ns, cfg)
    nobody = int(ns.sh("id -u nobody").stdout)
    check_caps(p.pid, NET, uid=nobody)

    text = open(cfg).read()
    with open(cfg, "w") as f:
        f.write(text.replace("ports: [80, 443]", "ports: [80, 443, 8080]"))
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reloaded")
    if "8080" not in nslib.nft_table(ns):
        nslib.fail("reload as nobody did not replace the table")
    check_caps(p.pid, NET, uid=nobody)
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop as nobody: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop as nobody")

    # Port 443 listener: CAP_NET_BIND_SERVICE too (root, no user switch).
    low = nslib.write_config(os.path.join(tmp, "low.yaml"), port=443)
    p = nslib.start(ns, low)
    check_caps(p.pid, NET | (1 << CAP_NET_BIND_SERVICE), uid=0)
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop (port 443)")

    # A user that does not exist: refused before anything is applied.
    bad = os.path.join(tmp, "bad.yaml")
    nslib.write_config(bad)
    with open(bad, "a") as f:
        f.write("user: tp-no-such-user\n")
    r = ns.run([os.environ["TPENGINE"], "-c", bad])
    if r.returncode != 1 or "no user `tp-no-such-user`" not in r.stderr:
        nslib.fail(f"unknown user: exit {r.returncode}\n{r.stderr}")
    nslib.expect_same(before, ns.snapshot(), "after the refused start")
    print("caps: ok")


def ambient_test(tmp):
    os.chmod(tmp, 0o755)
    cfg = nslib.write_config(os.path.join(tmp, "unit.yaml"))
    os.chmod(cfg, 0o644)
    ns = nslib.Netns("ambient")
    before = ns.snapshot()
    as_unit = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "--inh-caps=-all,+net_admin,+net_raw", "--ambient-caps=+net_admin,+net_raw",
               "--bounding-set=-all,+net_admin,+net_raw", os.environ["TPENGINE"], "-c", cfg]
    r = ns.run(as_unit + ["--check"])
    if r.returncode != 0 or not r.stdout.startswith("configuration valid"):
        nslib.fail(f"--check as the unit's user: exit {r.returncode}\n{r.stdout}{r.stderr}")
    p = ns.spawn(as_unit)
    nslib.wait_for_line(p, "tpengine: running (")
    nobody = int(ns.sh("id -u nobody").stdout)
    check_caps(p.pid, NET, uid=nobody)
    if nslib.count_ours(ns.snapshot()) != (1, 1, 1, 1, 1):
        nslib.fail("as the unit's user: %r" % (nslib.count_ours(ns.snapshot()),))
    text = open(cfg).read()
    with open(cfg, "w") as f:
        f.write(text.replace("ports: [80, 443]", "ports: [80, 443, 8080]"))
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reloaded")
    if "8080" not in nslib.nft_table(ns):
        nslib.fail("reload as the unit's user did not replace the table")
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop as the unit's user: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop as the unit's user")
    print("ambient: ok")


def main():
    nslib.require_root()
    tmp = tempfile.mkdtemp(prefix="tp-service-")
    which = sys.argv[1]
    {"notify": notify_test, "caps": caps_test, "ambient": ambient_test}[which](tmp)


if __name__ == "__main__":
    main()
