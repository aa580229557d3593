#!/usr/bin/env python3
"""Dials a colo name over the raw wire protocol while claiming to be another pod; prints what the
agent answered and whether the echo worked. Used by broker_test.sh."""
import array
import json
import socket
import sys

target, claimed = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect("\0colo")
req = {"v": 1, "id": 1, "op": "dial", "target": target,
       # Everything below is a lie the agent must ignore.
       "pod": {"namespace": "default", "name": claimed}, "identity": {"name": claimed}, "peer": {"name": claimed}}
s.send(json.dumps(req).encode())
fds = array.array("i")
msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
for level, kind, data in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
reply = json.loads(msg)
print(json.dumps({"ok": reply.get("ok"), "fds": len(fds), "peer": reply.get("peer", {}).get("name")}))
