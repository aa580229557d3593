#!/usr/bin/env python3
"""A hostile (or merely buggy) pod against colo-node's endpoint, over the raw wire protocol, and a
well-behaved one measuring hello latency meanwhile. Used by isolation_test.sh; bounded in time
and count. Prints one JSON line.

  attack.py hello SECONDS                 hello round trips on one connection; p50/p99/max in ms
  attack.py flood SECONDS                 requests as fast as possible, never reading a reply
  attack.py hold COUNT SECONDS            COUNT connections opened and held
  attack.py dials COUNT TARGET SECONDS    COUNT connections each dialing TARGET (one that never answers)
  attack.py deep                          a message nested 10 000 deep, then a hello on the same connection
  attack.py deaf NAME SECONDS             listens on NAME and never reads the incoming dials
  attack.py dialname NAME COUNT           COUNT dials of NAME, one after another; codes and max latency
  attack.py abandon TARGET NEXT           dials TARGET (never answers), closes the socket 50 ms later,
                                          then times a dial of NEXT on a new connection
"""
import json
import os
import resource
import socket
import sys
import time

ADDR = os.environ.get("COLO_SOCKET") or "\0colo"  # the abstract @colo unless a path is given


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(ADDR)
    return s


def req(i, op, **kw):
    return json.dumps(dict({"v": 1, "id": i, "op": op}, **kw)).encode()


def hello(seconds):
    s = connect()
    s.settimeout(2.0)
    lat, errors, i = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i += 1
        t0 = time.perf_counter()
        try:
            s.send(req(i, "hello"))
            r = json.loads(s.recv(65536))
            if not r.get("ok") or r.get("id") != i:
                errors += 1
        except (OSError, ValueError):  # reset, closed (b"" is not JSON), timed out
            errors += 1
            s.close()
            try:
                s = connect()
                s.settimeout(2.0)
            except OSError:
                time.sleep(0.05)
        lat.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.002)
    lat.sort()
    pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3)
    return {"n": len(lat), "errors": errors, "p50": pick(0.5), "p99": pick(0.99), "max": round(lat[-1], 3)}


def flood(seconds):
    s = connect()
    s.setblocking(False)
    sent, cut, i = 0, False, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not cut:
        i += 1
        try:
            s.send(req(i, "hello"))
            sent += 1
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            cut = True
    return {"sent": sent, "cut": cut}


def hold(count, seconds):
    resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, count + 64))
    conns, failed = [], 0
    for _ in range(count):
        try:
            conns.append(connect())
        except OSError:
            failed += 1
    # How many are really served: one hello each, answered or not.
    served = refused = closed = 0
    for i, s in enumerate(conns):
        try:
            s.settimeout(2.0)
            s.send(req(i, "hello"))
            r = s.recv(65536)
            if not r:
                closed += 1
            elif json.loads(r).get("ok"):
                served += 1
            else:
                refused += 1
        except OSError:
            closed += 1
    time.sleep(seconds)
    return {"opened": len(conns), "connect_failed": failed, "served": served, "refused": refused, "closed": closed}


def dials(count, target, seconds):
    conns = []
    for i in range(count):
        try:
            s = connect()
            s.send(req(i, "dial", target=target, timeoutMs=10000))
            conns.append(s)
        except OSError:
            pass
    codes = {}
    end = time.monotonic() + seconds
    for s in conns:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            r = json.loads(s.recv(65536))
            code = "ok" if r.get("ok") else r["error"]["code"]
        except socket.timeout:
            code = "pending"
        except OSError:
            code = "closed"
        codes[code] = codes.get(code, 0) + 1
    time.sleep(max(0, end - time.monotonic()))
    return {"sent": len(conns), "codes": codes}


def deep():
    s = connect()
    s.settimeout(2.0)
    s.send(b'{"v":1,"id":' + b"[" * 10000 + b"]" * 10000 + b',"op":"hello"}')
    first = json.loads(s.recv(65536))
    s.send(req(2, "hello"))
    second = json.loads(s.recv(65536))
    return {"first": first.get("error", {}).get("code"), "second_ok": second.get("ok")}


def deaf(name, seconds):
    s = connect()
    s.settimeout(2.0)
    s.send(req(1, "listen", name=name))
    r = json.loads(s.recv(65536))
    print(json.dumps({"listening": r.get("ok")}), flush=True)
    time.sleep(seconds)  # never reads again
    return {"done": True}


def dialname(name, count):
    s = connect()
    s.settimeout(3.0)
    codes, worst = {}, 0.0
    for i in range(count):
        t0 = time.perf_counter()
        s.send(req(i, "dial", target=name))
        msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(4 * 8))
        for level, kind, data in anc:  # close the descriptors that came along
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for k in range(0, len(data) - len(data) % 4, 4):
                    socket.close(int.from_bytes(data[k:k + 4], sys.byteorder))
        worst = max(worst, (time.perf_counter() - t0) * 1000)
        r = json.loads(msg)
        code = "ok" if r.get("ok") else r["error"]["code"]
        codes[code] = codes.get(code, 0) + 1
    return {"codes": codes, "max": round(worst, 3)}


def abandon(target, nxt):
    s = connect()
    s.send(req(1, "dial", target=target, timeoutMs=10000))
    time.sleep(0.05)
    s.close()  # abandoned: colo-node is still waiting for the connect
    t0 = time.perf_counter()
    s = connect()
    s.settimeout(5.0)
    s.send(req(2, "dial", target=nxt, timeoutMs=2000))
    try:
        r = json.loads(s.recv(65536))
        code = "ok" if r.get("ok") else r["error"]["code"]
    except OSError:
        code = "no_reply"
    return {"next": code, "ms": round((time.perf_counter() - t0) * 1000, 3)}


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "hello":
        out = hello(float(args[0]))
    elif cmd == "flood":
        out = flood(float(args[0]))
    elif cmd == "hold":
        out = hold(int(args[0]), float(args[1]))
    elif cmd == "dials":
        out = dials(int(args[0]), args[1], float(args[2]))
    elif cmd == "abandon":
        out = abandon(args[0], args[1])
    elif cmd == "deep":
        out = deep()
    elif cmd == "deaf":
        out = deaf(args[0], float(args[1]))
    elif cmd == "dialname":
        out = dialname(args[0], int(args[1]))
    else:
        sys.exit(__doc__)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
