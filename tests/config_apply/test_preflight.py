"""Preflight that sees the rest of the firewall (issue 13 item 3), in --check and at start, in
one warning channel (`tpengine: warning:` on stderr, counted in --check's summary) with
--strict turning warnings into errors: another table's input chain that would drop the
intercepted packets (and the mark accept rule that fixes it), masquerade behind
`source: client`, an interface that does not exist, another socket on a listener's port with
SO_REUSEPORT, max_connections above RLIMIT_NOFILE, workers above the CPUs, and a fixed upstream
that is the listener itself. Nothing is ever applied by a refused start."""
import os
import re
import tempfile

import nslib

REUSEPORT_HOLDER = """import socket, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("::", 50080))
s.listen()
print("ready", flush=True)
time.sleep(100)
"""


def check(ns, cfg, args=(), pre=()):
    return ns.run(list(pre) + [os.environ["TPENGINE"], "-c", cfg, "--check"] + list(args))


def expect(r, code, stdout=None, stderr=None, what=""):
    if (r.returncode != code or (stdout and not re.search(stdout, r.stdout, re.M))
            or (stderr and not re.search(stderr, r.stderr, re.M))):
        nslib.fail(f"{what}: expected exit {code}, /{stdout}/ on stdout, /{stderr}/ on stderr; "
                   f"got {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")


def yaml(path, listener_extra="    max_connections: 1000\n", top="workers: 1\n"):
    with open(path, "w") as f:
        f.write(top + f"""routing: {{mark: 0x1, mask: 0x1, table: 100, priority: 100}}
nftables: {{table: {nslib.TABLE}}}
listeners:
  - name: web
    address: "::"
    port: 50080
{listener_extra}rules:
  - name: lan-web
    interfaces: [lan0]
    ports: [80]
    action: tproxy
    listener: web
""")
    return path


def main():
    nslib.require_root()
    tp = os.environ["TPENGINE"]
    tmp = tempfile.mkdtemp(prefix="tpa-preflight-")
    good = yaml(os.path.join(tmp, "good.yaml"))
    ns = nslib.Netns("preflight")
    ns.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    before = ns.snapshot()

    # An interface that does not exist: a warning, counted; an error under --strict.
    r = check(ns, good)
    expect(r, 0, r"^configuration valid, 1 warning \(on stderr\)$",
           r"^tpengine: warning: interface lan0 named in the rules does not exist", "no lan0")
    expect(check(ns, good, ["--strict"]), 1, None, r"1 warning above, errors under --strict",
           "no lan0, --strict")
    r = ns.run([tp, "-c", good, "--strict"])
    expect(r, 1, None, r"interface lan0.*\n.*0 problem\(s\), 1 warning\(s\) \(errors under "
           r"--strict\); nothing applied", "start, no lan0, --strict")
    nslib.expect_same(before, ns.snapshot(), "start refused under --strict")
    ns.sh("ip link add lan0 type veth peer name lan0p")
    expect(check(ns, good), 0, r"^configuration valid$", None, "with lan0")
    before = ns.snapshot()

    # Another table's input chain drops what tpengine intercepts.
    ns.sh("nft add table inet fw; "
          "nft add chain inet fw input '{ type filter hook input priority 0; policy drop; }'; "
          "nft add rule inet fw input tcp dport 22 accept")
    r = check(ns, good)
    expect(r, 0, r"^configuration valid, 1 warning", r"^tpengine: warning: table inet fw chain "
           r"input \(hook input\): its policy is drop\..*`meta mark & 0x1 == 0x1 accept`",
           "input policy drop")
    expect(check(ns, good, ["--strict"]), 1, None, r"errors under --strict", "input drop strict")
    # --no-rules too: a firewall that includes the rules meets the same chain.
    expect(check(ns, good, ["--no-rules"]), 0, r"1 warning", r"warning: table inet fw chain input",
           "input drop, --no-rules")
    # At start: the same warning, then it runs.
    p = ns.spawn([tp, "-c", good])
    lines = nslib.wait_for_line(p, "tpengine: running (")
    if not any("warning: table inet fw chain input" in l for l in lines):
        nslib.fail("the start should print the same warning:\n" + "".join(lines))
    nslib.stop(p)
    ns.sh("nft insert rule inet fw input meta mark and 0x1 == 0x1 accept")
    expect(check(ns, good), 0, r"^configuration valid$", None, "with the mark accept rule")
    ns.sh("nft delete table inet fw")
    # A reject reached through a jump (firewalld's shape).
    ns.sh("nft add table inet fwl; "
          "nft add chain inet fwl zones; nft add rule inet fwl zones reject; "
          "nft add chain inet fwl filter_INPUT '{ type filter hook input priority 10; }'; "
          "nft add rule inet fwl filter_INPUT ct state established,related accept; "
          "nft add rule inet fwl filter_INPUT jump zones")
    expect(check(ns, good), 0, None, r"warning: table inet fwl chain filter_INPUT \(hook input\): "
           r"its rule `jump zones` -> chain zones: `reject` may drop them", "reject via jump")
    ns.sh("nft delete table inet fwl")

    # source: client behind masquerade.
    client = yaml(os.path.join(tmp, "client.yaml"),
                  "    max_connections: 1000\n    upstream: {to: original, source: client}\n")
    ns.sh("nft add table ip nat; "
          "nft add chain ip nat post '{ type nat hook postrouting priority srcnat; }'; "
          "nft add rule ip nat post oifname lan0 masquerade")
    expect(check(ns, client), 0, r"1 warning", r"warning: a listener keeps the client's address "
           r"\(upstream.source: client or client-port\), but table ip nat chain post "
           r"`oifname \"lan0\" masquerade`", "masquerade")
    expect(check(ns, good), 0, r"^configuration valid$", None, "masquerade, source: proxy")
    ns.sh("nft delete table ip nat")

    # Another socket on the port with SO_REUSEPORT would split the connections.
    holder = ns.spawn(["python3", "-c", REUSEPORT_HOLDER])
    nslib.wait_for_line(holder, "ready")
    expect(check(ns, good), 1, None, r"listener web: another socket already listens on "
           r"\[::\]:50080 with SO_REUSEPORT", "SO_REUSEPORT holder")
    r = ns.run([tp, "-c", good])
    expect(r, 1, None, r"another socket already listens.*\n.*nothing applied",
           "start next to a SO_REUSEPORT holder")
    nslib.expect_same(before, ns.snapshot(), "start refused next to a SO_REUSEPORT holder")
    holder.kill()
    holder.wait()

    # Careless limits.
    many = yaml(os.path.join(tmp, "many.yaml"), "    max_connections: 100000\n")
    expect(check(ns, many, pre=["prlimit", "--nofile=4096:4096"]), 0, r"1 warning",
           r"warning: max_connections \(100000 in all, listeners web\) needs about 200000 file "
           r"descriptors .* RLIMIT_NOFILE allows 4096", "max_connections above RLIMIT_NOFILE")
    workers = yaml(os.path.join(tmp, "workers.yaml"), top="workers: 4\n")  # 4 > 1 CPU
    expect(check(ns, workers, pre=["taskset", "-c", "0"]), 0, r"1 warning",
           r"warning: workers 4 is more than the 1 CPUs", "workers above the CPUs")
    selfish = yaml(os.path.join(tmp, "self.yaml"),
                   "    max_connections: 1000\n    upstream: {to: \"127.0.0.1:50080\"}\n")
    expect(check(ns, selfish), 1, None, r"listener web: upstream.to 127.0.0.1:50080 is this "
           r"listener itself", "upstream is the listener")
    r = ns.run([tp, "-c", selfish])
    expect(r, 1, None, r"nothing applied", "start with upstream = listener")
    nslib.expect_same(before, ns.snapshot(), "everything refused")
    print("ok")


if __name__ == "__main__":
    main()
