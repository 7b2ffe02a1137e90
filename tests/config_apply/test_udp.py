"""UDP preflight and conntrack flush (issue 9), in a private network namespace:
- net.ipv4.conf.lan0.src_valid_mark=1 (TPROXY would drop silently) is refused by --check and at
  start, with the message, and nothing is applied;
- --check probes a UDP listener's UDP port (a TCP socket on it is no problem, a UDP one is);
- after the rules go in, the conntrack entries of UDP flows they intercept are deleted, and only
  those: other ports, other destinations, a bypassed client and TCP keep theirs."""
import os
import signal
import tempfile

import nslib

YAML = """nftables: {table: tpaudp}
listeners:
  - name: u
    address: "::"
    port: 50053
    protocol: udp
rules:
  - name: keep
    sources: [192.0.2.9/32]
    action: bypass
  - name: dns
    interfaces: [lan0]
    ports: [53]
    destinations: [198.51.100.0/24, "2001:db8:2::/64"]
    action: tproxy
    listener: u
"""

HOLD = """import socket, time
s = socket.socket(socket.AF_INET6, socket.{kind})
s.bind(("::", 50053))
print("ready", flush=True)
time.sleep(60)
"""

# (label, conntrack -I arguments, flushed?)
ENTRIES = [
    ("v4 dns", "-p udp -s 192.0.2.2 -d 198.51.100.2 --sport 40000 --dport 53", True),
    ("v6 dns", "-p udp -s 2001:db8:1::2 -d 2001:db8:2::2 --sport 40001 --dport 53", True),
    ("other port", "-p udp -s 192.0.2.2 -d 198.51.100.2 --sport 40002 --dport 54", False),
    ("other destination", "-p udp -s 192.0.2.2 -d 203.0.113.2 --sport 40003 --dport 53", False),
    ("bypassed client", "-p udp -s 192.0.2.9 -d 198.51.100.2 --sport 40004 --dport 53", False),
    ("tcp", "-p tcp -s 192.0.2.2 -d 198.51.100.2 --sport 40005 --dport 53 --state ESTABLISHED",
     False),
]


def sport_of(args):
    return args.split("--sport ")[1].split()[0]


def main():
    nslib.require_root()
    tp = os.environ["TPENGINE"]
    tmp = tempfile.mkdtemp(prefix="tpa-udp-")
    cfg = os.path.join(tmp, "udp.yaml")
    with open(cfg, "w") as f:
        f.write(YAML)
    ns = nslib.Netns("udp")
    # No link-local addresses: they appear a moment later and would upset the snapshots.
    ns.sh("ip link add lan0 type veth peer name lan0p && ip link set lan0 addrgenmode none && "
          "ip link set lan0p addrgenmode none && ip link set lan0 up && ip link set lan0p up && "
          "ip addr add 192.0.2.1/24 dev lan0 && ip addr add 2001:db8:1::1/64 dev lan0 nodad")

    # --- --dry-run shows the UDP tproxy rules, both families ---
    r = ns.run([tp, "-c", cfg, "--dry-run"])
    for want in ('iifname "lan0" meta l4proto udp ip daddr @dst4-dns udp dport 53 counter name '
                 '"rule-dns" tproxy ip to :50053',
                 'iifname "lan0" meta l4proto udp ip6 daddr @dst6-dns udp dport 53 counter name '
                 '"rule-dns" tproxy ip6 to :50053'):
        if r.returncode != 0 or want not in r.stdout:
            nslib.fail(f"--dry-run lacks `{want}`:\n{r.stdout}{r.stderr}")
    print("ok: --dry-run shows the UDP tproxy rules (v4, v6)")

    # --- src_valid_mark=1 on lan0: refused, nothing applied ---
    ns.sh("sysctl -qw net.ipv4.conf.lan0.src_valid_mark=1")
    before = ns.snapshot()
    r = ns.run([tp, "-c", cfg, "--check"])
    if r.returncode != 1 or "net.ipv4.conf.lan0.src_valid_mark is 1" not in r.stderr:
        nslib.fail(f"--check with src_valid_mark=1: exit {r.returncode}\n{r.stderr}")
    print("ok: --check refuses src_valid_mark=1 on lan0")
    r = ns.run([tp, "-c", cfg], timeout=30)
    if r.returncode != 1 or "src_valid_mark is 1" not in r.stderr or \
            "nothing applied" not in r.stderr:
        nslib.fail(f"start with src_valid_mark=1: exit {r.returncode}\n{r.stderr}")
    nslib.expect_same(before, ns.snapshot(), "start refused with src_valid_mark=1")
    print("ok: start refuses src_valid_mark=1 on lan0; nothing applied")
    ns.sh("sysctl -qw net.ipv4.conf.lan0.src_valid_mark=0")

    # --- the listener's UDP port, not its TCP port, is what --check probes ---
    for kind, held_fails in (("SOCK_STREAM", False), ("SOCK_DGRAM", True)):
        holder = ns.spawn(["python3", "-c", HOLD.format(kind=kind)])
        nslib.wait_for_line(holder, "ready")
        r = ns.run([tp, "-c", cfg, "--check"])
        failed = r.returncode == 1 and "cannot bind UDP :: port 50053" in r.stderr
        if failed != held_fails or (not held_fails and r.returncode != 0):
            nslib.fail(f"--check with a {kind} socket on port 50053: exit {r.returncode}\n"
                       f"{r.stderr}")
        print(f"ok: --check with a {kind} socket holding port 50053: "
              f"{'refused' if held_fails else 'valid'}")
        holder.kill()
        holder.wait()

    # --- conntrack entries born before the rules ---
    for label, args, _ in ENTRIES:
        r = ns.sh(f"conntrack -I {args} -t 300", check=False)
        if r.returncode != 0:
            print(f"SKIP: conntrack -I ({label}) failed: {r.stderr.strip()}")
            raise SystemExit(nslib.SKIP)
    proc = ns.spawn([tp, "-c", cfg, "-v"])
    lines = nslib.wait_for_line(proc, "running (")
    if not any("running (" in line for line in lines):
        nslib.fail("tpengine did not start:\n" + "".join(lines))
    if not any("flushed 2 conntrack entries" in line for line in lines):
        nslib.fail("expected `flushed 2 conntrack entries` before `running`:\n" + "".join(lines))
    left = ns.sh("conntrack -L 2>/dev/null").stdout
    for label, args, flushed in ENTRIES:
        present = f"sport={sport_of(args)} " in left
        if present == flushed:
            nslib.fail(f"{label}: entry {'still there' if present else 'deleted'}:\n{left}")
        print(f"ok: {label}: {'flushed' if flushed else 'kept'}")
    proc.send_signal(signal.SIGTERM)
    if proc.wait(timeout=30) != 0:
        nslib.fail(f"tpengine exited {proc.returncode}")
    print("PASS")


if __name__ == "__main__":
    main()
