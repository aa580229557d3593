#!/usr/bin/env python3
"""colo-bench-py-ipc: the Python client's round trips against colo-bench-ipc's server, measured as
its C++ client does (bench/ipc_bench.cpp): a control record, then ping-pong of SIZE bytes; on a
channel only the first 8 bytes of each message are touched (in place).

    ipc.py --to NAME --via unix|channel --size S --iters N      -> "p50_us p99_us"
    ipc.py local --size S --iters N                             (the rings in one process)
"""

import argparse
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import colo  # noqa: E402

WARMUP = 1000


def report(rtt):
    if not rtt:
        print("nan nan")
        return
    rtt.sort()
    print(f"{rtt[len(rtt) // 2] * 1e6:.3f} {rtt[len(rtt) * 99 // 100] * 1e6:.3f}")


def ping_channel(ch, size, iters):
    touch, rtt, clock = min(size, 8), [], time.perf_counter
    for i in range(iters + WARMUP):
        t0 = clock()
        out = ch.reserve(size)
        out[:touch] = b"xxxxxxxx"[:touch]
        out.release()
        ch.commit(size)
        msg = ch.read()
        bytes(msg[:touch])
        msg.release()
        ch.release()
        if i >= WARMUP:
            rtt.append(clock() - t0)
    return rtt


def ping_stream(sock, size, iters):
    buf, rtt, clock = bytearray(size), [], time.perf_counter
    view = memoryview(buf)
    for i in range(iters + WARMUP):
        t0 = clock()
        sock.sendall(buf)
        got = 0
        while got < size:
            n = sock.recv_into(view[got:])
            if not n:
                return rtt
            got += n
        if i >= WARMUP:
            rtt.append(clock() - t0)
    return rtt


def echo(ch):
    os.sched_setaffinity(0, {1})
    while True:
        msg = ch.read()
        n = len(msg)
        out = ch.reserve(n)
        out[:min(n, 8)] = msg[:min(n, 8)]
        out.release()
        msg.release()
        ch.release()
        ch.commit(n)


def main():
    local = len(sys.argv) > 1 and sys.argv[1] == "local"
    p = argparse.ArgumentParser()
    p.add_argument("--to", default="bench")
    p.add_argument("--via", default="channel", choices=["unix", "channel"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--iters", type=int, default=20000)
    a = p.parse_args(sys.argv[2:] if local else sys.argv[1:])
    if local:
        side0, side1 = colo.local_pair(8 << 20)
        threading.Thread(target=echo, args=(side1,), daemon=True).start()
        os.sched_setaffinity(0, {0})  # this thread; the echo thread pins itself to CPU 1
        report(ping_channel(side0, a.size, a.iters))
        os._exit(0)
    os.sched_setaffinity(0, {0})
    with colo.open() as client:
        conn = client.dial(a.to)
        if a.via == "channel":
            ch = colo.open_channel(client, conn, 8 << 20)
            ch.send(b"E")
            report(ping_channel(ch, a.size, a.iters))
        else:
            conn.sendall(b"E" + struct.pack("<I", a.size))
            report(ping_stream(conn, a.size, a.iters))


if __name__ == "__main__":
    main()
