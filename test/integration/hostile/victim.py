#!/usr/bin/env python3
"""The Python client as side 1: accept the offered channel, then N times read and send. One line
per call: 'py read ok LEN' / 'py read err CLASS: MSG' / 'py send ok' / 'py send err ...'."""
import os, socket, sys
sys.path.insert(0, os.environ["COLO_PY"])
import colo
from colo import channel
conn = socket.socket(fileno=int(os.environ["COLO_PAIR_FD"]))
try:
    ch = channel.accept_channel(conn, 5)
except colo.ColoError as e:
    print(f"py accept err {type(e).__name__}: {e}\npy alive", flush=True)
    sys.exit(0)
for _ in range(int(os.environ.get("N", 3))):
    for op in ("read", "send"):
        try:
            if op == "read":
                v = ch.read(timeout=2); n = len(v); v.release(); ch.release(); print(f"py read ok {n}", flush=True)
            else:
                ch.send(b"y" * 64, timeout=2); print("py send ok", flush=True)
        except colo.ColoError as e:
            print(f"py {op} err {type(e).__name__}: {e}", flush=True)
print("py alive", flush=True)
