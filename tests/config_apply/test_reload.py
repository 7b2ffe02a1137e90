"""SIGHUP: an invalid file is rejected with its errors, the table stays as it was and the
process and its connections live on; a new listener on a port in use is rejected naming the
listener and its address; a valid changed file replaces the table (a new port in
the set), adds a listener and the open relayed connection keeps working; a changed route
table moves the policy routing, a listener the file drops is closed, and a
reload restores a table an admin flushed away. Stop then leaves nothing."""
import os
import signal
import subprocess
import tempfile
import time

import nslib

ECHO = """import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000)); s.listen()
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

CLIENT = """import socket, sys
c = socket.create_connection(("127.0.0.1", 50080), timeout=10)
print("connected", flush=True)
for line in sys.stdin:
    c.sendall(line.encode())
    got = b""
    while not got.endswith(b"\\n"):
        d = c.recv(4096)
        if not d: break
        got += d
    print("echo " + got.decode().strip(), flush=True)
"""


def echo(client, word):
    client.stdin.write(word + "\n")
    client.stdin.flush()
    nslib.wait_for_line(client, "echo " + word)


def main():
    nslib.require_root()
    tmp = tempfile.mkdtemp(prefix="tpa-reload-")
    cfg = os.path.join(tmp, "proxy.yaml")
    nslib.write_config(cfg, upstream="127.0.0.1:9000")
    ns = nslib.Netns("reload")
    before = ns.snapshot()
    server = ns.spawn(["python3", "-c", ECHO])
    nslib.wait_for_line(server, "ready")
    p = nslib.start(ns, cfg)
    client = ns.spawn(["python3", "-c", CLIENT], stdin=subprocess.PIPE)
    nslib.wait_for_line(client, "connected")
    echo(client, "one")
    table = nslib.nft_table(ns)

    # Invalid file: rejected, everything stays.
    with open(cfg) as f:
        good_text = f.read()
    with open(cfg, "w") as f:
        f.write(good_text.replace("ports: [80, 443]", "ports: [80, 0]"))
    p.send_signal(signal.SIGHUP)
    lines = nslib.wait_for_line(p, "reload rejected")
    if not any("proxy.yaml:" in l and "rules[0].ports" in l for l in lines):
        nslib.fail("the rejection should carry FILE:LINE:COL and the key:\n" + "".join(lines))
    if p.poll() is not None:
        nslib.fail("tpengine died on an invalid reload")
    if nslib.nft_table(ns) != table:
        nslib.fail("invalid reload changed the table")
    echo(client, "two")

    # A new listener whose port is taken: rejected, naming the listener and its address.
    holder = ns.spawn(["python3", "-c", "import socket, time\ns = socket.socket(socket.AF_INET6)\n"
                       "s.bind(('::', 50081)); s.listen(); print('ready', flush=True)\n"
                       "time.sleep(100)"])
    nslib.wait_for_line(holder, "ready")
    nslib.write_config(cfg, ports=(80, 443, 8080), upstream="127.0.0.1:9000",
                       extra_listener_port=50081)
    p.send_signal(signal.SIGHUP)
    lines = nslib.wait_for_line(p, "reload rejected")
    if not any("listener extra ([::]:50081)" in l and "Address already in use" in l
               for l in lines):
        nslib.fail("the rejection should name the listener and its address:\n" + "".join(lines))
    if nslib.nft_table(ns) != table:
        nslib.fail("a reload with a port in use changed the table")
    holder.kill()
    holder.wait()
    echo(client, "two-b")

    # Valid file with a new port and a new listener.
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reloaded")
    t = nslib.nft_table(ns)
    if "8080" not in t:
        nslib.fail("the new port is not in the table:\n" + t)
    if ":50081" not in ns.sh("ss -Htln").stdout:
        nslib.fail("the new listener is not up")
    echo(client, "three")
    if nslib.count_ours(ns.snapshot()) != (1, 1, 1, 1, 1):
        nslib.fail("after reload: %r" % (nslib.count_ours(ns.snapshot()),))

    # Route table 100 -> 101: the policy routing moves, nothing of 100 is left.
    nslib.write_config(cfg, ports=(80, 443, 8080), upstream="127.0.0.1:9000", rt=101)
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reloaded")
    s = ns.snapshot()
    if nslib.count_ours(s, rt=101) != (1, 1, 1, 1, 1) or nslib.count_ours(s)[1:] != (0, 0, 0, 0):
        nslib.fail("routing did not move to table 101:\n" + s)
    if ":50081" in ns.sh("ss -Htln").stdout:
        nslib.fail("the listener the file dropped is still up")
    echo(client, "four")

    # A reload the kernel refuses (someone's default route in the new route table 102): the
    # running rules stay exactly as they were.
    ns.sh("ip route add unreachable default table 102")
    running = ns.snapshot()
    nslib.write_config(cfg, ports=(80, 443, 8080), upstream="127.0.0.1:9000", rt=102)
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reload rejected: cannot replace the rules")
    nslib.wait_for_line(p, "File exists")
    nslib.expect_same(running, ns.snapshot(), "reload refused by the kernel")
    echo(client, "four-b")
    ns.sh("ip route del unreachable default table 102")
    nslib.write_config(cfg, ports=(80, 443, 8080), upstream="127.0.0.1:9000", rt=101)

    # An admin flushed the ruleset: a reload with the same file restores the table.
    ns.sh("nft flush ruleset")
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "was gone; restored")
    nslib.wait_for_line(p, "reloaded")  # this reload's last line: the next wait starts clean
    if "8080" not in nslib.nft_table(ns):
        nslib.fail("the table was not restored")
    echo(client, "five")

    # A reload whose nft transaction fails after new routing went in (new table name held by
    # another process, new route table 102): the added rules and routes are undone.
    owner = subprocess.Popen(ns.cmd(["nft", "-i"]), stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    ns.procs.append(owner)
    owner.stdin.write("add table inet tpb { flags owner; }\n")
    owner.stdin.flush()
    for _ in range(50):
        if "table inet tpb" in ns.sh("nft list tables").stdout:
            break
        time.sleep(0.1)
    running = ns.snapshot()
    nslib.write_config(cfg, ports=(80, 443, 8080), upstream="127.0.0.1:9000", rt=102,
                       table="tpb")
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reload rejected: cannot replace the rules")
    nslib.wait_for_line(p, "Operation not permitted")
    nslib.expect_same(running, ns.snapshot(), "reload whose nft transaction failed")
    echo(client, "five-b")
    owner.stdin.close()
    owner.wait(timeout=10)

    # A new table name: the new table replaces the old one in the same transaction.
    nslib.write_config(cfg, ports=(80, 443, 8080), upstream="127.0.0.1:9000", rt=101,
                       table="tpb")
    p.send_signal(signal.SIGHUP)
    nslib.wait_for_line(p, "reloaded")
    s = ns.snapshot()
    if nslib.count_ours(s, table="tpb", rt=101) != (1, 1, 1, 1, 1) or "table inet tpa" in s:
        nslib.fail("table rename did not replace tpa by tpb:\n" + s)
    echo(client, "six")

    client.stdin.close()
    client.wait(timeout=10)
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "after stop")
    print("ok")


if __name__ == "__main__":
    main()
