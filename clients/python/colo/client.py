"""Hello, listen, accept and dial over this pod's colo-node endpoint."""

import dataclasses
import logging
import os
import select
import socket
import threading
import time

from . import errors, wire


@dataclasses.dataclass(frozen=True)
class Identity:
    """A pod as colo-node knows it (from the API or the CNI call, never from the pod itself)."""

    namespace: str = ""
    name: str = ""
    uid: str = ""
    key: str = ""
    node: str = ""
    ips: tuple = ()
    service_account: str = ""

    @classmethod
    def from_json(cls, j):
        j = j if isinstance(j, dict) else {}
        return cls(namespace=str(j.get("namespace", "")), name=str(j.get("name", "")), uid=str(j.get("uid", "")),
                   key=str(j.get("key", "")), node=str(j.get("node", "")), ips=tuple(j.get("ips") or ()),
                   service_account=str(j.get("serviceAccount", "")))

    def __str__(self):
        return f"{self.namespace}/{self.name}"


class Conn(socket.socket):
    """A connected socket colo-node handed over, with how it travels ('unix': a Unix pair between
    two pods of this node; 'tcp': TCP connected from inside this pod's netns) and, for a Unix pair,
    the pod at the other end (`peer`) and the colo name (`name`)."""

    transport = ""
    peer = Identity()
    name = ""
    address = ""
    route = None  # dial by Kubernetes name: {"via": "unix"|"pod-ip"|"cluster-ip", "why": "..."}

    @classmethod
    def adopt(cls, fd, transport, peer=None, name="", address="", route=None):
        conn = cls(fileno=fd)
        conn.transport, conn.peer, conn.name, conn.address = transport, peer or Identity(), name, address
        conn.route = route
        return conn


DEFAULT_DIAL_TIMEOUT = 2.0
MAX_DIAL_TIMEOUT = 10.0


class Client:
    """A connection to colo-node for hello, dial and channels; requests on it are served one at a
    time (it is safe to share between threads)."""

    def __init__(self, timeout=5.0):
        self._lock = threading.Lock()
        self._caller = wire.Caller(wire.connect("open", timeout))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with self._lock:
            self._caller.close()

    def call(self, op, fields, timeout, target=""):
        with self._lock:
            return self._caller.call(op, fields, timeout, target)

    def hello(self, timeout=5.0):
        """What colo-node says about this pod: {'identity': Identity, 'peer', 'agent', 'hugepages'}."""
        reply, fds = self.call("hello", {}, timeout)
        wire.close_fds(fds)
        reply["identity"] = Identity.from_json(reply.get("identity"))
        return reply

    def whoami(self, timeout=5.0):
        return self.hello(timeout)["identity"]

    def dial(self, target, timeout=DEFAULT_DIAL_TIMEOUT):
        """A Conn to `target`: "namespace/name" or "name" (served on this node: a Unix pair with the
        listener's identity) or "ip:port" / "[ipv6]:port" (TCP from this pod's netns), or in
        Kubernetes mode "service/<ns>/<name>:<port or port name>" or "pod/<ns>/<name>:<port>" (the
        nearest way: `conn.route` says which and why). `timeout` in seconds bounds the dial
        (colo-node allows at most 10 s)."""
        wire.check_target(target)
        t = min(max(timeout if timeout is not None else DEFAULT_DIAL_TIMEOUT, 0.001), MAX_DIAL_TIMEOUT)
        reply, fds = self.call("dial", {"target": target, "timeoutMs": max(1, int(t * 1000))}, t + 1.0, target)
        if len(fds) != 1:
            wire.close_fds(fds)
            raise errors.ProtocolError("dial", f"reply carried {len(fds)} descriptors, not 1", target=target)
        peer = reply.get("peer") if isinstance(reply.get("peer"), dict) else {}
        transport = str(reply.get("transport", ""))
        return Conn.adopt(fds[0], transport, Identity.from_json(peer) if transport == "unix" else Identity(),
                          name=str(reply.get("name", "")), address=str(peer.get("address", "")),
                          route=reply.get("route") if isinstance(reply.get("route"), dict) else None)


_log = logging.getLogger("colo")
RELISTEN_FIRST, RELISTEN_MAX = 0.05, 2.0


class Listener:
    """A colo name served by this pod, held by the listener's own connection to colo-node and
    released when it closes. `fileno()` is readable when a connection waits (for selectors).

    A Listener outlives colo-node: when the agent restarts (an upgrade), accept() keeps waiting
    while the listener reconnects (back-off 50 ms to 2 s) and registers its name again, logging
    both on the "colo" logger; `reconnects` counts the times. fileno() keeps its number across a
    restart, but the socket behind it is new: an epoll-based selector must register it again
    (unregister + register) when `reconnects` changed. Only close() ends it."""

    def __init__(self, name, timeout=5.0):
        wire.check_name("listen", name)
        self._requested = name
        self._closed = threading.Event()
        self._lock = threading.Lock()  # guards _sock against close()
        self.reconnects = 0
        self._sock, self.name = self._register(timeout)

    def _register(self, timeout):
        caller = wire.Caller(wire.connect("listen", timeout))
        try:
            reply, fds = caller.call("listen", {"name": self._requested}, timeout, self._requested)
        except BaseException:
            caller.close()
            raise
        wire.close_fds(fds)
        caller.sock.settimeout(None)
        return caller.sock, str(reply.get("name", self._requested))

    def fileno(self):
        return self._sock.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Releases the name; an accept() blocked in another thread raises Closed."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in another thread
            except OSError:
                pass
            self._sock.close()

    def _closed_error(self):
        return errors.Closed("accept", "listener closed", target=self.name)

    def _relisten(self, deadline):
        """Registers the name again on a restarted colo-node; the socket keeps its fd number."""
        _log.warning("colo: listener %s: colo-node went away; listening again when it is back", self.name)
        wait = RELISTEN_FIRST
        while not self._closed.is_set():
            try:
                sock, _ = self._register(2.0)
            except errors.ColoError:
                left = None if deadline is None else deadline - time.monotonic()
                pause = wait if left is None else min(wait, max(left, 0.05))
                if self._closed.wait(pause):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.Timeout("accept", "colo-node not back yet", target=self.name) from None
                wait = min(wait * 2, RELISTEN_MAX)
                continue
            with self._lock:
                if self._closed.is_set():
                    sock.close()
                    break
                os.dup2(sock.fileno(), self._sock.fileno(), inheritable=False)
                sock.close()
                self.reconnects += 1
            _log.warning("colo: listener %s: colo-node is back; listening again", self.name)
            return
        raise self._closed_error()

    def accept(self, timeout=None):
        """The next incoming Conn (its `peer` is the dialing pod); Timeout after `timeout` seconds;
        Closed once close() was called (also from another thread)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed.is_set():
                raise self._closed_error()
            if deadline is not None:
                ready, _, _ = select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise errors.Timeout("accept", "no incoming connection", target=self.name)
            try:
                event, fds = wire.recv(self._sock)
            except (EOFError, ConnectionResetError, OSError) as e:
                if self._closed.is_set():
                    raise self._closed_error() from None
                if not isinstance(e, (EOFError, ConnectionResetError)):
                    raise errors.Unreachable("accept", str(e), target=self.name) from None
                self._relisten(deadline)
                continue
            except ValueError as e:
                raise errors.ProtocolError("accept", str(e), target=self.name) from None
            if event.get("event") != "incoming" or len(fds) != 1:
                wire.close_fds(fds)  # not for us (a newer agent's event), or malformed: skip it
                continue
            return Conn.adopt(fds[0], "unix", Identity.from_json(event.get("peer")), name=str(event.get("name", self.name)))

    def __iter__(self):
        while True:
            yield self.accept()


def listen(name, timeout=5.0):
    """Registers `name` (1 to 63 of [a-z0-9.-]) in this pod's namespace, or "port/<n>": this pod
    serves its TCP port n over colo too (dial by Kubernetes name finds it)."""
    return Listener(name, timeout)


def open(timeout=5.0):  # noqa: A001 (colo.open, as colo_open)
    return Client(timeout)
