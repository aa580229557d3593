"""The colo wire protocol (docs/protocol.md): SOCK_SEQPACKET, one JSON object per packet (64 KiB at
most), descriptors as SCM_RIGHTS on the same packet (8 at most)."""

import json
import os
import socket

from . import errors

VERSION = 1
MAX_MESSAGE = 64 * 1024
MAX_FDS = 8


def agent_address():
    """$COLO_SOCKET, else the abstract socket @colo of the pod's network namespace."""
    path = os.environ.get("COLO_SOCKET") or "@colo"
    return "\0" + path[1:] if path.startswith("@") else path


def connect(op, timeout):
    address = agent_address()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except socket.timeout as e:
        sock.close()
        raise errors.Timeout(op, f"connecting to colo-node at {address!r}: {e}") from None
    except OSError as e:
        sock.close()
        raise errors.Unreachable(op, f"cannot reach colo-node at {address.replace(chr(0), '@')}: {e}") from None
    return sock


MAX_TARGET = 512  # pod/<63>/<253>:<65535> is the longest meaningful target
_TARGET_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-/:[]%_")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


def _short(s):
    return s if len(s) <= 80 else f"{s[:40]}...{len(s)} bytes"


def check_target(target):
    """Every client refuses the same bad targets with Invalid before sending anything."""
    if not isinstance(target, str) or not 1 <= len(target) <= MAX_TARGET:
        n = len(target) if isinstance(target, str) else 0
        raise errors.Invalid("dial", f"a target is 1 to {MAX_TARGET} characters, not {n}", target=_short(str(target)))
    bad = next((ch for ch in target if ch not in _TARGET_CHARS), None)
    if bad is not None:
        raise errors.Invalid("dial", f"a target is made of letters, digits and . - / : [ ] % _, not {bad!r}",
                             target=target)


def check_name(op, name):
    """1 to 63 of [a-z0-9.-], or "port/<n>" (1..65535, no leading zeros)."""
    if not isinstance(name, str):
        raise errors.Invalid(op, "a name is a string")
    if name.startswith("port/"):
        n = name[5:]
        if not (n.isdigit() and n.isascii() and n[0] != "0" and len(n) <= 5 and 1 <= int(n) <= 65535):
            raise errors.Invalid(op, "port/<n> takes a port from 1 to 65535 without leading zeros", target=name)
        return
    if not 1 <= len(name) <= 63:
        raise errors.Invalid(op, "a name is 1 to 63 characters", target=_short(name))
    if any(ch not in _NAME_CHARS for ch in name):
        raise errors.Invalid(op, "a name is made of a-z, 0-9, '.' and '-'", target=name)


def close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def recv(sock):
    """One packet: (body dict, [fds]). Raises EOFError when the agent closed the connection."""
    msg, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE + 1, MAX_FDS)
    for fd in fds:
        os.set_inheritable(fd, False)
    if not msg and not fds:
        raise EOFError("colo-node closed the connection")
    if len(msg) > MAX_MESSAGE or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        close_fds(fds)
        raise ValueError("message or its descriptors truncated")
    try:
        body = json.loads(msg)
    except ValueError as e:
        close_fds(fds)
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(body, dict):
        close_fds(fds)
        raise ValueError("not a JSON object")
    return body, fds


class Caller:
    """Requests and replies on one agent connection, one at a time; reconnects once when colo-node
    closed the connection (idle) before the request reached it."""

    def __init__(self, sock):
        self.sock = sock
        self.next_id = 0

    def call(self, op, fields, timeout, target=""):
        """Returns (reply dict, [fds]) or raises the ColoError for the agent's error."""
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = connect(op, timeout)
            try:
                return self._round_trip(op, fields, timeout, target)
            except (EOFError, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt == 1:
                    raise errors.Unreachable(op, f"colo-node connection: {e}", target=target) from None

    def _round_trip(self, op, fields, timeout, target):
        self.next_id += 1
        rid = self.next_id
        body = json.dumps({"v": VERSION, "id": rid, "op": op, **fields}).encode()
        if len(body) > MAX_MESSAGE:
            raise errors.Invalid(op, "request over 64 KiB", target=target)
        self.sock.settimeout(timeout)
        try:
            self.sock.send(body)
            while True:
                reply, fds = recv(self.sock)
                if reply.get("id") == rid:
                    break
                close_fds(fds)  # the late reply to a request whose caller gave up
        except socket.timeout:
            raise errors.Timeout(op, "no reply from colo-node", target=target) from None
        except ValueError as e:
            self.close()  # out of step with the agent: start afresh next time
            raise errors.ProtocolError(op, str(e), target=target) from None
        if reply.get("ok") is not True:
            close_fds(fds)
            raise errors.from_reply(op, target, reply.get("error"))
        return reply, fds

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
