#!/usr/bin/env python3
"""Who-knows-whom probe for the lab: a TCP server that records the peer it accepted, and a
client that prints its own view (getsockname/getpeername) plus what the server saw.

  peer.py server --log FILE ADDR:PORT [ADDR:PORT...]   ([v6]:port for IPv6)
  peer.py client [--timeout S] [--during CMD] HOST PORT

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


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("server", "client"):
        sys.exit(__doc__)
    if sys.argv[1] == "server":
        serve(sys.argv[2:])
        return 0
    return client(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
