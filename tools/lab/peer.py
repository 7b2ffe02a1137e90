#!/usr/bin/env python3
"""Who-knows-whom probe for the lab: a TCP server that records the peer it accepted, and a
client that prints its own view (getsockname/getpeername) plus what the server saw.

  peer.py server --log FILE ADDR:PORT [ADDR:PORT...]   ([v6]:port for IPv6)
  peer.py client [--timeout S] [--during CMD] HOST PORT
  peer.py echo ADDR:PORT                               (echo server, half-close aware)
  peer.py many N HOST PORT                             (N concurrent echo round trips)
  peer.py userver --log FILE ADDR:PORT [ADDR:PORT...]  (UDP: answers each datagram with the
                                                        source it saw and its own address)
  peer.py uclient [--timeout S] [--bind ADDR] [--between CMD] HOST PORT [PORT...]
                                                       (UDP: one socket, one datagram to each
                                                        PORT in turn, each answer checked)

The client prints key=value lines: client_local, client_peer, server_peer, server_local (each
IP:PORT, v6 in brackets) and, with --during, CMD's output (run while the connection is open,
e.g. `ss -tn` inside the proxy) after a line `during:`. Exit 0 on success, 1 on failure.
"""
import json
import socket
import subprocess
import sys
import threading


def fmt(addr):
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_hostport(text):
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def serve(args):
    log_path = None
    binds = []
    it = iter(args)
    for a in it:
        if a == "--log":
            log_path = next(it)
        else:
            binds.append(parse_hostport(a))
    if not log_path or not binds:
        sys.exit("usage: peer.py server --log FILE ADDR:PORT...")
    lock = threading.Lock()

    def handle(conn):
        with conn:
            peer, local = fmt(conn.getpeername()), fmt(conn.getsockname())
            rec = {"server_peer": peer, "server_local": local}
            with lock, open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            try:
                conn.sendall(f"server_peer={peer}\nserver_local={local}\n".encode())
                conn.settimeout(30)
                while conn.recv(4096):  # hold until the client closes
                    pass
            except OSError:
                pass

    def accept_loop(sock):
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threads = []
    for host, port in binds:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        s.listen(128)
        t = threading.Thread(target=accept_loop, args=(s,), daemon=True)
        t.start()
        threads.append(t)
    print("peer.py: listening", flush=True)
    for t in threads:
        t.join()


def client(args):
    timeout, during = 5.0, None
    rest = []
    it = iter(args)
    for a in it:
        if a == "--timeout":
            timeout = float(next(it))
        elif a == "--during":
            during = next(it)
        else:
            rest.append(a)
    if len(rest) != 2:
        sys.exit("usage: peer.py client [--timeout S] [--during CMD] HOST PORT")
    host, port = rest[0], int(rest[1])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        out = [f"client_local={fmt(s.getsockname())}", f"client_peer={fmt(s.getpeername())}"]
        buf = b""
        while buf.count(b"\n") < 2:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed before the server's report")
            buf += chunk
        out += buf.decode().splitlines()
        print("\n".join(out), flush=True)
        if during:
            r = subprocess.run(during, shell=True, capture_output=True, text=True, timeout=10)
            print("during:")
            print(r.stdout + r.stderr, end="", flush=True)
    except (OSError, socket.timeout) as e:
        print(f"error={type(e).__name__}: {e}", flush=True)
        return 1
    finally:
        s.close()
    return 0


def echo(args):
    import asyncio

    host, port = parse_hostport(args[0])

    async def handle(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.write_eof()
            await w.drain()
        except OSError:
            pass
        w.close()

    async def run():
        srv = await asyncio.start_server(handle, host, port, backlog=4096)
        print("peer.py: echo listening", flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(run())


def many(args):
    """N concurrent connections, each sends its own random payload, half-closes, and must get it
    back byte for byte. Prints "ok=K of N" and the first errors; exit 0 only if all came back."""
    import asyncio
    import os
    import resource

    n, host, port = int(args[0]), args[1], int(args[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * n + 64)), hard))

    async def one(i):
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 15)
        data = os.urandom(1000 + 37 * i)
        w.write(data)
        await w.drain()
        w.write_eof()
        got = await asyncio.wait_for(r.read(), 30)
        w.close()
        return got == data or f"connection {i}: {len(got)} of {len(data)} bytes back, or different"

    async def run():
        return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)

    res = asyncio.run(run())
    good = sum(1 for x in res if x is True)
    print(f"ok={good} of {n}")
    for x in [x for x in res if x is not True][:3]:
        print(f"error={x!r}")
    return 0 if good == n else 1


def userver(args):
    """UDP: each datagram is answered, from the address and port it was sent to, with
    server_peer=SOURCE and server_local=ADDR:PORT lines; each is logged as JSON."""
    import selectors
    log_path, binds = None, []
    it = iter(args)
    for a in it:
        if a == "--log":
            log_path = next(it)
        else:
            binds.append(parse_hostport(a))
    if not log_path or not binds:
        sys.exit("usage: peer.py userver --log FILE ADDR:PORT...")
    sel = selectors.DefaultSelector()
    for host, port in binds:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        sel.register(s, selectors.EVENT_READ)
    print("peer.py: udp listening", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            data, peer = sock.recvfrom(65535)
            rec = {"server_peer": fmt(peer), "server_local": fmt(sock.getsockname()),
                   "bytes": len(data)}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            sock.sendto(f"server_peer={rec['server_peer']}\nserver_local={rec['server_local']}\n"
                        .encode(), peer)


def uclient(args):
    """UDP: one socket sends one datagram to HOST:PORT for each PORT, in turn, and waits for the
    answer. Prints client_local, then per port N (1, 2...): reply_fromN (where the answer came
    from, as the client's socket saw it), server_peerN, server_localN. --between CMD runs CMD
    before each datagram after the first (e.g. a reload of the relay). Exit 1 on a timeout."""
    timeout, bind_addr, between, rest = 5.0, None, None, []
    it = iter(args)
    for a in it:
        if a == "--timeout":
            timeout = float(next(it))
        elif a == "--bind":
            bind_addr = next(it)
        elif a == "--between":
            between = next(it)
        else:
            rest.append(a)
    if len(rest) < 2:
        sys.exit("usage: peer.py uclient [--timeout S] [--bind ADDR] HOST PORT [PORT...]")
    host, ports = rest[0], [int(p) for p in rest[1:]]
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.bind((bind_addr or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), 0))
    out = []
    try:
        for n, port in enumerate(ports, 1):
            if n > 1 and between:
                subprocess.run(between, shell=True, timeout=30)
            s.sendto(b"who am I talking to?", (host, port))
            data, src = s.recvfrom(65535)
            if n == 1:
                out.append(f"client_local={fmt(s.getsockname())}")
            out.append(f"reply_from{n}={fmt(src)}")
            for line in data.decode().splitlines():
                k, _, v = line.partition("=")
                out.append(f"{k}{n}={v}")
    except (OSError, socket.timeout) as e:
        out.append(f"error={type(e).__name__}: {e}")
        print("\n".join(out), flush=True)
        return 1
    finally:
        s.close()
    print("\n".join(out), flush=True)
    return 0


def main():
    modes = {"server": serve, "client": client, "echo": echo, "many": many,
             "userver": userver, "uclient": uclient}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    return modes[sys.argv[1]](sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
