#!/usr/bin/env python3
"""Service translation test helper, run inside a pod's netns.

serve NAME PORT SECONDS: answers every TCP connection (IPv4 and IPv6) with NAME, then closes.
dial HOST PORT [N]: N connections; for each prints "peer=<getpeername ip>:<port> reply=<name>".
udp HOST PORT: a connected UDP socket to HOST:PORT, held for 3 s (for ss to see its kernel peer).
A connection that fails prints "error=<errno name>". Bounded: 3 s per connection.
"""
import errno
import socket
import sys
import threading
import time


def serve(name, port, seconds):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(128)
    s.settimeout(0.5)
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        def reply(c=c):
            try:
                c.sendall(name.encode() + b"\n")
            finally:
                c.close()
        threading.Thread(target=reply, daemon=True).start()


def dial(host, port, n):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(n):
        deadline = time.monotonic() + 3
        while True:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(3)
            try:
                s.connect((host, port))
                peer = s.getpeername()
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    data += chunk
                p = f"[{peer[0]}]:{peer[1]}" if family == socket.AF_INET6 else f"{peer[0]}:{peer[1]}"
                print(f"peer={p} reply={data.decode().strip()}", flush=True)
                break
            except OSError as e:
                # a fresh IPv6 address may still be tentative; a server may be a moment late
                if e.errno in (errno.EADDRNOTAVAIL, errno.ECONNREFUSED) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                print(f"error={errno.errorcode.get(e.errno, e.errno) if e.errno else type(e).__name__}", flush=True)
                break
            finally:
                s.close()


def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    print("connected", flush=True)
    time.sleep(3)


if __name__ == "__main__":
    if sys.argv[1] == "udp":
        udp(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        dial(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 1)
