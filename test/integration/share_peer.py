#!/usr/bin/env python3
"""Peers for share_test.sh, over the raw wire protocol. Prints one JSON line. Bounded in count and time.

  share_peer.py huge N          N 2 MiB channels, each asked on a fresh connection that is closed at
                                once while the memory descriptor is kept; then every descriptor is
                                closed and one more channel asked: {"kinds": [...], "after": kind}
  share_peer.py connflood PATH SECONDS
                                connect, hello, close as fast as possible (a host user on a pod's
                                colo.sock): {"connects": n, "codes": {...}}
"""
import array
import json
import os
import socket
import sys
import time

ADDR = os.environ.get("COLO_SOCKET") or "\0colo"


def req(i, op, **kw):
    return json.dumps(dict({"v": 1, "id": i, "op": op}, **kw)).encode()


def call(s, raw):
    s.settimeout(5.0)
    s.send(raw)
    msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(4 * 8))
    fds = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % 4])
            fds += list(a)
    return json.loads(msg), fds


def channel(i):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(ADDR)
    r, fds = call(s, req(i, "channel", bytes=2 << 20))
    s.close()  # the asking connection goes at once
    for f in fds[1:]:
        os.close(f)  # the bells
    return (r.get("memory") or r.get("error", {}).get("code")), fds[:1]


def huge(n):
    kinds, kept = [], []
    for i in range(n):
        kind, mem = channel(i)
        kinds.append(kind)
        kept += mem
    for f in kept:
        os.close(f)  # the last reference: the kernel frees the pages, colo-node refunds
    after = None
    for i in range(50):  # the refund is the kernel's notice: allow it a moment
        kind, mem = channel(100 + i)
        for f in mem:
            os.close(f)
        after = kind
        if kind == "hugepages":
            break
        time.sleep(0.1)
    return {"kinds": kinds, "after": after}


def connflood(path, seconds):
    end = time.monotonic() + seconds
    n, codes = 0, {}
    while time.monotonic() < end:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            s.settimeout(1.0)
            s.send(req(1, "hello"))
            n += 1
            try:
                r = json.loads(s.recv(65536) or b"{}")
                c = r.get("error", {}).get("code", "ok" if r.get("ok") else "closed")
            except OSError as e:
                c = type(e).__name__
            codes[c] = codes.get(c, 0) + 1
            s.close()
        except OSError as e:
            codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
            time.sleep(0.001)
    return {"connects": n, "codes": codes}


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "huge":
        out = huge(int(args[0]))
    elif cmd == "connflood":
        out = connflood(args[0], float(args[1]))
    else:
        sys.exit(__doc__)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
