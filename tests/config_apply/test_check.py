"""--check, --dry-run, --no-rules and the command line: --check prints `configuration valid`
(exit 0) or every problem (exit 1, FILE:LINE:COL for config errors) and touches nothing; so
does --dry-run; --no-rules runs without touching nftables or policy routing; usage errors
exit 2."""
import os
import re
import signal
import tempfile

import nslib

HOLD_PORT = """import socket, time
s = socket.socket(socket.AF_INET6)
s.bind(("::", 50080))
s.listen()
print("ready", flush=True)
time.sleep(100)
"""


def expect(r, code, needle, what, stream="stderr"):
    text = getattr(r, stream)
    if r.returncode != code or (needle and not re.search(needle, text)):
        nslib.fail(f"{what}: expected exit {code} and /{needle}/ on {stream}; got "
                   f"{r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")


def main():
    nslib.require_root()
    tp = os.environ["TPENGINE"]
    tmp = tempfile.mkdtemp(prefix="tpa-check-")
    good = nslib.write_config(os.path.join(tmp, "good.yaml"))
    bad = os.path.join(tmp, "bad.yaml")
    with open(good) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace("ports: [80, 443]", "ports: [80, 70000]"))
    ns = nslib.Netns("check")
    ns.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    ns.sh("ip link add lan0 type veth peer name lan0p")  # the rules name it; else a warning
    before = ns.snapshot()

    r = ns.run([tp, "-c", good, "--check"])
    expect(r, 0, r"^configuration valid$", "--check good file", "stdout")
    nslib.expect_same(before, ns.snapshot(), "--check good file")
    if ns.sh("ss -Htln").stdout.strip():
        nslib.fail("--check left a listening socket")

    r = ns.run([tp, "-c", bad, "--check"])
    expect(r, 1, re.escape(bad) + r":\d+:\d+: rules\[0\]\.ports", "--check bad file")
    if "configuration valid" in r.stdout:
        nslib.fail("--check bad file printed `configuration valid`")
    nslib.expect_same(before, ns.snapshot(), "--check bad file")

    r = ns.run([tp, "-c", good, "--dry-run"])
    expect(r, 0, r"table inet tpa \{", "--dry-run", "stdout")
    expect(r, 0, r"ip -4 rule add fwmark 0x1/0x1 lookup 100 priority 100", "--dry-run", "stdout")
    nslib.expect_same(before, ns.snapshot(), "--dry-run")
    r = ns.run([tp, "-c", bad, "--dry-run"])
    expect(r, 1, re.escape(bad) + r":\d+:\d+:", "--dry-run bad file")

    # Preflight failures, one line each with the fix.
    holder = ns.spawn(["python3", "-c", HOLD_PORT])
    nslib.wait_for_line(holder, "ready")
    r = ns.run([tp, "-c", good, "--check"])
    expect(r, 1, r"listener web: cannot bind \[::\]:50080: Address already in use", "port in use")
    holder.kill()
    holder.wait()
    r = ns.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", tp, "-c", good, "--check"])
    expect(r, 1, r"IP_TRANSPARENT: Operation not permitted.*CAP_NET_RAW", "no capabilities")
    expect(r, 1, r"nftables: no permission", "no capabilities")
    # Forwarding off: TPROXY still works (a warning); dnat to another host would not (failure).
    ns.sh("sysctl -qw net.ipv4.ip_forward=0")
    r = ns.run([tp, "-c", good, "--check"])
    expect(r, 0, r"warning: net\.ipv4\.ip_forward is 0", "ip_forward off, tproxy")
    dnat = os.path.join(tmp, "dnat.yaml")
    with open(dnat, "w") as f:
        f.write("nftables: {table: tpa}\nrules:\n  - name: fwd\n    interfaces: [lan0]\n"
                "    ports: [8080]\n    action: dnat\n    to: \"192.0.2.10:80\"\n")
    r = ns.run([tp, "-c", dnat, "--check"])
    expect(r, 1, r"net\.ipv4\.ip_forward is 0: dnat rules", "ip_forward off, dnat")
    ns.sh("sysctl -qw net.ipv4.ip_forward=1")
    r = ns.run([tp, "-c", dnat, "--check"])
    expect(r, 0, r"", "dnat with forwarding")
    ns.sh("ip route add blackhole 198.51.100.0/24 table 100")
    r = ns.run([tp, "-c", good, "--check"])
    expect(r, 1, r"routing\.table 100 already holds", "route table in use")
    ns.sh("ip route del blackhole 198.51.100.0/24 table 100")
    ns.sh("ip -6 rule add from 2001:db8:7::/48 lookup 100 priority 500")
    r = ns.run([tp, "-c", good, "--check"])
    expect(r, 1, r"routing\.table 100 is already looked up by `ip -6 rule 500: lookup 100`",
           "route table looked up by another rule")
    ns.sh("ip -6 rule del from 2001:db8:7::/48 lookup 100 priority 500")
    nslib.expect_same(before, ns.snapshot(), "after the preflight failures")

    # --no-rules: relays only; nftables and policy routing untouched while running and after.
    p = nslib.start(ns, good, ["--no-rules"])
    nslib.expect_same(before, ns.snapshot(), "--no-rules while running")
    if ":50080" not in ns.sh("ss -Htln").stdout:
        nslib.fail("--no-rules: listener not up")
    rc, out = nslib.stop(p)
    if rc != 0:
        nslib.fail(f"--no-rules stop: exit {rc}\n{out}")
    nslib.expect_same(before, ns.snapshot(), "--no-rules after stop")

    # Command line.
    expect(ns.run([tp, "--help"]), 0, r"usage: tpengine -c FILE", "--help", "stdout")
    expect(ns.run([tp, "--version"]), 0, r"^tpengine \d+\.\d+", "--version", "stdout")
    expect(ns.run([tp]), 2, r"use -c FILE", "no arguments")
    expect(ns.run([tp, "-c", good, "--bogus"]), 2, r"unknown argument", "unknown flag")
    expect(ns.run([tp, "-c", good, "--check", "--dry-run"]), 2, r"exclude each other",
           "two modes")
    expect(ns.run([tp, "-c", good, "--workers", "x"]), 2, r"--workers", "bad --workers")
    expect(ns.run([tp, "-c", os.path.join(tmp, "missing.yaml"), "--check"]), 1, r"missing\.yaml",
           "missing file")
    nslib.expect_same(before, ns.snapshot(), "command-line errors")
    print("ok")


if __name__ == "__main__":
    main()
