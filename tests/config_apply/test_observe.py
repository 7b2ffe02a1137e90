"""`tpengine -c` with `control:` and `metrics:`: `ctl status` shows the listener and the rule
counters read back from nft; `ctl reload` of a bad file answers the error with its position
(exit 1) and changes nothing; a good file answers ok; /metrics (scraped inside the namespace)
carries the rule counters and the reload outcomes and passes promtool; `ctl stop` stops
gracefully and the table is gone."""
import json
import os
import shutil
import subprocess
import tempfile

import nslib

SCRAPE = """import urllib.request, sys
print(urllib.request.urlopen("http://127.0.0.1:9469/metrics", timeout=10).read().decode(), end="")
"""


def ctl(sock, *args):
    return subprocess.run([os.environ["TPENGINE"], "ctl", *args, "--socket", sock],
                          capture_output=True, text=True, timeout=90)


def write(cfg, sock, **kw):
    nslib.write_config(cfg, **kw)
    with open(cfg, "a") as f:
        f.write(f"control: {{socket: {sock}}}\nmetrics: {{listen: 127.0.0.1:9469}}\n")


def main():
    nslib.require_root()
    tmp = tempfile.mkdtemp(prefix="tpa-observe-")
    cfg = os.path.join(tmp, "proxy.yaml")
    sock = os.path.join(tmp, "control.sock")
    write(cfg, sock)
    ns = nslib.Netns("observe")
    p = nslib.start(ns, cfg)

    r = ctl(sock, "status", "--json")
    if r.returncode != 0:
        nslib.fail(f"ctl status: {r.returncode}\n{r.stdout}{r.stderr}")
    st = json.loads(r.stdout)
    if [l["name"] for l in st["listeners"]] != ["web"]:
        nslib.fail(f"status listeners: {st['listeners']}")
    if "lan-web" not in [x["name"] for x in st["rules"]]:
        nslib.fail(f"status rules (from nft counters): {st['rules']}")
    if st["reload"]["last"] != "none":
        nslib.fail(f"status reload before any: {st['reload']}")

    table = nslib.nft_table(ns)
    with open(cfg) as f:
        good = f.read()
    with open(cfg, "w") as f:
        f.write(good.replace("ports: [80, 443]", "ports: [80, 0]"))
    r = ctl(sock, "reload")
    if r.returncode != 1:
        nslib.fail(f"ctl reload of a bad file: exit {r.returncode}, expected 1\n{r.stdout}{r.stderr}")
    if "proxy.yaml:" not in r.stderr or "rules[0].ports" not in r.stderr:
        nslib.fail("ctl reload should answer FILE:LINE:COL and the key:\n" + r.stderr)
    if p.poll() is not None or nslib.nft_table(ns) != table:
        nslib.fail("a rejected reload changed something")
    text = ctl(sock, "status").stdout
    if "last=failed" not in text or "rules[0].ports" not in text:
        nslib.fail("status after a failed reload:\n" + text)

    write(cfg, sock, ports=(80, 443, 8080))
    r = ctl(sock, "reload")
    if r.returncode != 0 or "reloaded" not in r.stdout:
        nslib.fail(f"ctl reload of a good file: exit {r.returncode}\n{r.stdout}{r.stderr}")
    if "8080" not in nslib.nft_table(ns):
        nslib.fail("the reload did not reach the table")

    m = ns.run(["python3", "-c", SCRAPE], check=True).stdout
    for want in ('tpengine_rule_packets_total{rule="lan-web"} ',
                 'tpengine_reloads_total{result="ok"} 1\n',
                 'tpengine_reloads_total{result="failed"} 1\n',
                 'tpengine_connections_accepted_total{listener="web"} 0\n'):
        if want not in m:
            nslib.fail(f"/metrics lacks {want!r}:\n{m[:3000]}")
    tool = shutil.which("promtool")
    if tool is None:
        nslib.fail("promtool not found (tools/install-deps.sh installs prometheus)")
    pr = subprocess.run([tool, "check", "metrics"], input=m, capture_output=True, text=True)
    if pr.returncode != 0:
        nslib.fail(f"promtool check metrics:\n{pr.stdout}{pr.stderr}")

    r = ctl(sock, "stop")
    if r.returncode != 0:
        nslib.fail(f"ctl stop: {r.returncode} {r.stderr}")
    p.wait(30)
    if p.returncode != 0:
        nslib.fail(f"exit {p.returncode} after ctl stop")
    if nslib.count_ours(ns.snapshot()) != (0, 0, 0, 0, 0):
        nslib.fail("ctl stop left kernel state behind")
    if os.path.exists(sock):
        nslib.fail("control socket left behind")
    print("PASS: ctl status/reload/stop and /metrics through tpengine -c")


if __name__ == "__main__":
    main()
