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
