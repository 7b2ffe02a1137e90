"""Reloads never open a gap: with capture_local, this namespace's own connections to
198.51.100.1:80 and [2001:db8:2::1]:80 are intercepted (output chain mark -> policy route via lo -> tproxy) and
relayed to an echo server, while 48 SIGHUPs alternate between two rule sets (so the table is
updated each time; every other one also adds and removes address ranges beside the ones in use,
so the destination sets are refilled) and change one of the listener's settings (idle timeout,
max_connections, backlog, fast_open): they are applied to the listening sockets in place, so
their accept queues keep what they hold (before, each such reload replaced the sockets and
reset what was queued: 6-9 resets per run). Any moment without the rules or the policy routing sends
a SYN out of the veth to nowhere (EHOSTUNREACH after ARP/ND fails) or, with the output mark but
no tproxy, to a closed local port (ECONNREFUSED); the test demands zero failures and names the
target of each failure."""
import os
import signal
import subprocess
import tempfile

import nslib

RELOADS = 48

ECHO = """import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000)); s.listen(512)
print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Connects over and over from THREADS threads until stdin closes; prints the tally. Several at
# once keep the listener's accept queue from being empty when a reload acts on it.
CLIENT = """import socket, sys, threading
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
lock = threading.Lock()
tally = {"ok": 0, "fail": 0}
errors = {}
targets = [("198.51.100.1", 80), ("2001:db8:2::1", 80)]
def run(t):
    n = t
    while not stop.is_set():
        n += 1
        target = targets[n % 2]
        try:
            c = socket.create_connection(target, timeout=5)
            c.sendall(b"ping\\n")
            got = b""
            while not got.endswith(b"\\n"):
                d = c.recv(64)
                if not d: break
                got += d
            c.close()
            key = None if got == b"ping\\n" else "short reply"
        except OSError as e:
            key = f"{target[0]}: {e}"
        with lock:
            if key is None:
                tally["ok"] += 1
            else:
                tally["fail"] += 1
                errors[key] = errors.get(key, 0) + 1
threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
for th in threads: th.start()
print("started", flush=True)
for th in threads: th.join()
print(f"done ok={tally['ok']} fail={tally['fail']} errors={errors}", flush=True)
""".replace("THREADS", "8")


def config(path, extra_port, variant=0):
    # Ranges beside the ones the client uses come and go with the port (the adjacent halves
    # merge with them into one interval, and split off again).
    extra = ', 198.51.100.128/25, 203.0.113.0/24, "2001:db8:2:1::/64"' if extra_port == 8082 else ""
    # The listener's settings change too, one of them at each reload (issue 13 item 6): none
    # of them may cost a connection that is queued or being accepted meanwhile.
    idle = ["300s", "301s"][variant % 2]
    maxc = [65536, 1000][(variant // 2) % 2]
    backlog = [4096, 1024][(variant // 4) % 2]
    fast_open = ["false", "true"][(variant // 8) % 2]
    with open(path, "w") as f:
        f.write(f"""workers: 1
routing: {{mark: 0x1, mask: 0x1, table: 100, priority: 100, bypass_mark: 0x2}}
nftables: {{table: tpa}}
capture_local: true
listeners:
  - name: web
    address: "::"
    port: 50080
    transparent: true
    backlog: {backlog}
    fast_open: {fast_open}
    max_connections: {maxc}
    timeouts: {{idle: {idle}}}
    upstream: {{to: "127.0.0.1:9000"}}
rules:
  - name: lab
    destinations: [198.51.100.0/25, "2001:db8:2::/64"{extra}]
    ports: [80, {extra_port}]
    action: tproxy
    listener: web
""")


def main():
    nslib.require_root()
    tmp = tempfile.mkdtemp(prefix="tpa-load-")
    cfg = os.path.join(tmp, "proxy.yaml")
    config(cfg, 8081)
    ns = nslib.Netns("load")
    # A route for 198.51.100.0/24 that leads nowhere: only interception can answer.
    # (a veth pair inside the namespace; nothing answers for 192.0.2.2).
    # No link-local addresses (their DAD would change the routes under the test).
    ns.sh("ip link add v0 type veth peer name v1 && "
          "ip link set v0 addrgenmode none && ip link set v1 addrgenmode none && "
          "ip link set v0 up && ip link set v1 up && "
          "ip addr add 192.0.2.1/24 dev v0 && ip route add 198.51.100.0/24 via 192.0.2.2 dev v0 && "
          "ip -6 addr add 2001:db8:1::1/64 dev v0 nodad && "
          "ip -6 route add 2001:db8:2::/64 via 2001:db8:1::2 dev v0")
    before = ns.snapshot()
    server = ns.spawn(["python3", "-c", ECHO])
    nslib.wait_for_line(server, "ready")
    p = nslib.start(ns, cfg)
    client = ns.spawn(["python3", "-c", CLIENT], stdin=subprocess.PIPE)
    nslib.wait_for_line(client, "started")
    for i in range(RELOADS):
        port = 8082 if i % 2 == 0 else 8081
        config(cfg, port, i + 1)
        p.send_signal(signal.SIGHUP)
        nslib.wait_for_line(p, "reloaded")
        if f"{{ 80, {port} }}" not in nslib.nft_table(ns):
            nslib.fail(f"reload {i}: port {port} not in the table:\n" + nslib.nft_table(ns))
    client.stdin.close()
    line = nslib.wait_for_line(client, "done ok=", timeout=30)[-1]
    print(line.strip())
    fields = dict(kv.split("=", 1) for kv in line.split()[1:3])
    if int(fields["fail"]) != 0 or int(fields["ok"]) == 0:
        nslib.fail("connections failed across reloads: " + line)
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop")
    print("ok")


if __name__ == "__main__":
    main()
