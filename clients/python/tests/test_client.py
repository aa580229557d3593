"""The client against a scripted agent on a private socket ($COLO_SOCKET): framing, ids,
descriptors, errors. The real colo-node is exercised by test/integration/interop_test.sh."""

import json
import os
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import colo  # noqa: E402


def read_req(c):
    data = c.recv(65536)
    if not data:
        return None
    req = json.loads(data)
    assert req["v"] == 1, req
    return req


def reply(c, body, fds=()):
    socket.send_fds(c, [json.dumps(body).encode()], list(fds)) if fds else c.send(json.dumps(body).encode())


class Agent:
    """Serves each accepted connection with the next script, in order."""

    def __init__(self, *scripts):
        self.dir = tempfile.TemporaryDirectory()
        path = os.path.join(self.dir.name, "colo.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        self.sock.listen()
        self.old = os.environ.get("COLO_SOCKET")
        os.environ["COLO_SOCKET"] = path
        self.thread = threading.Thread(target=self._run, args=(scripts,), daemon=True)
        self.thread.start()

    def _run(self, scripts):
        for s in scripts:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c, s=s: (s(c), c.close()), daemon=True).start()

    def close(self):
        self.sock.close()
        if self.old is None:
            os.environ.pop("COLO_SOCKET", None)
        else:
            os.environ["COLO_SOCKET"] = self.old
        self.dir.cleanup()


class Client(unittest.TestCase):
    def test_agent_errors_are_their_classes_and_builtins(self):
        def script(c):
            while (req := read_req(c)) is not None:
                reply(c, {"v": 1, "id": req["id"], "ok": False, "error": {"code": req["target"], "message": "because"}})
        agent = Agent(script)
        self.addCleanup(agent.close)
        expect = {"not_found": (colo.NotFound, LookupError), "permission_denied": (colo.Denied, PermissionError),
                  "refused": (colo.Refused, ConnectionRefusedError), "timeout": (colo.Timeout, TimeoutError),
                  "invalid_argument": (colo.Invalid, ValueError), "already_exists": (colo.Exists, FileExistsError),
                  "unavailable": (colo.Unavailable, colo.ColoError), "something_new": (colo.Internal, colo.ColoError)}
        with colo.open() as c:
            for code, (cls, builtin) in expect.items():
                with self.assertRaises(cls) as cm:
                    c.dial(code)
                self.assertIsInstance(cm.exception, builtin)
                self.assertEqual((cm.exception.code, cm.exception.op, cm.exception.message), (code, "dial", "because"))

    def test_no_agent_is_unreachable(self):
        old = os.environ.get("COLO_SOCKET")
        os.environ["COLO_SOCKET"] = "/nonexistent/colo.sock"
        try:
            with self.assertRaises(colo.Unreachable):
                colo.open()
        finally:
            os.environ.pop("COLO_SOCKET") if old is None else os.environ.__setitem__("COLO_SOCKET", old)

    def test_late_reply_is_skipped_and_its_socket_closed(self):
        late = []

        def script(c):
            first, second = read_req(c), read_req(c)
            a, b = socket.socketpair()
            late.append(a)
            reply(c, {"v": 1, "id": first["id"], "ok": True, "transport": "unix", "peer": {}}, [b.fileno()])
            b.close()
            x, y = socket.socketpair()
            reply(c, {"v": 1, "id": second["id"], "ok": True, "transport": "unix", "name": "shop/echo",
                      "peer": {"namespace": "shop", "name": "echo-0", "uid": "u1", "key": "u1"},
                      "route": {"via": "unix", "why": "on this node"}}, [y.fileno()])
            y.close()
            x.send(b"hi")
            time.sleep(0.3)
            x.close()
        agent = Agent(script)
        self.addCleanup(agent.close)
        with colo.open() as c:
            with self.assertRaises(colo.Timeout):
                c.dial("shop/echo", timeout=0.05)
            time.sleep(1.1)  # the client waits timeout + 1 s for the reply: let that pass too
            conn = c.dial("shop/echo")
            self.assertEqual((conn.transport, str(conn.peer), conn.name), ("unix", "shop/echo-0", "shop/echo"))
            self.assertIsInstance(conn, socket.socket)
            self.assertEqual(conn.route, {"via": "unix", "why": "on this node"})
            self.assertEqual(conn.recv(2), b"hi")
            conn.close()
        late[0].settimeout(1)
        self.assertEqual(late[0].recv(1), b"", "the late reply's socket was kept open")

    def test_reconnects_after_the_agent_closed_an_idle_connection(self):
        def answer(c):
            req = read_req(c)
            reply(c, {"v": 1, "id": req["id"], "ok": True, "identity": {"namespace": "shop", "name": "cart", "node": "n1"}})
        agent = Agent(lambda c: None, answer)
        self.addCleanup(agent.close)
        with colo.open() as c:
            time.sleep(0.05)
            me = c.whoami()
            self.assertEqual((str(me), me.node), ("shop/cart", "n1"))

    def test_listener_accepts_with_identity_and_skips_unknown_events(self):
        dialer = []

        def script(c):
            req = read_req(c)
            assert req["op"] == "listen" and req["name"] == "web", req
            reply(c, {"v": 1, "id": req["id"], "ok": True, "name": "shop/web"})
            a, b = socket.socketpair()
            dialer.append(a)
            reply(c, {"v": 1, "event": "something-newer"})
            reply(c, {"v": 1, "event": "incoming", "name": "shop/web",
                      "peer": {"namespace": "shop", "name": "cart", "uid": "u2", "key": "u2"}}, [b.fileno()])
            b.close()
            time.sleep(0.5)
        agent = Agent(script)
        self.addCleanup(agent.close)
        with colo.listen("web") as l:
            self.assertEqual(l.name, "shop/web")
            conn = l.accept(timeout=2)
            self.assertEqual((str(conn.peer), conn.transport), ("shop/cart", "unix"))
            dialer[0].send(b"ping")
            self.assertEqual(conn.recv(4), b"ping")
            conn.close()
            with self.assertRaises(colo.Timeout):
                l.accept(timeout=0.05)

    def test_listener_listens_again_after_agent_restart(self):
        def listen(c):
            req = read_req(c)
            assert req["op"] == "listen" and req["name"] == "web", req
            reply(c, {"v": 1, "id": req["id"], "ok": True, "name": "shop/web"})

        def second(c):
            listen(c)
            a, b = socket.socketpair()
            reply(c, {"v": 1, "event": "incoming", "name": "shop/web", "peer": {"namespace": "shop", "name": "cart"}},
                  [b.fileno()])
            b.close()
            a.close()
            time.sleep(0.5)
        agent = Agent(listen, second)  # the first connection ends: colo-node went away
        self.addCleanup(agent.close)
        with colo.listen("web") as l:
            fd = l.fileno()
            with self.assertLogs("colo", "WARNING") as logs:
                conn = l.accept(timeout=3)
            conn.close()
            self.assertEqual((str(conn.peer), l.reconnects, l.fileno()), ("shop/cart", 1, fd))
            self.assertTrue(any("listening again" in m for m in logs.output), logs.output)

    def test_close_wakes_a_blocked_accept(self):
        released = threading.Event()

        def script(c):
            listen_req = read_req(c)
            reply(c, {"v": 1, "id": listen_req["id"], "ok": True, "name": "shop/web"})
            if c.recv(16) == b"":  # the client hung up: colo-node releases the name
                released.set()
        agent = Agent(script)
        self.addCleanup(agent.close)
        l = colo.listen("web")
        got = []
        t = threading.Thread(target=lambda: got.append(self._accept_error(l)), daemon=True)
        t.start()
        time.sleep(0.2)
        l.close()
        t.join(2)
        self.assertFalse(t.is_alive(), "accept still blocked after close()")
        self.assertIsInstance(got[0], colo.Closed)
        self.assertTrue(released.wait(2), "the agent connection stayed open")

    @staticmethod
    def _accept_error(l):
        try:
            l.accept()
        except Exception as e:  # noqa: BLE001 (the test looks at which)
            return e
        return None

    def test_bad_targets_and_names_are_invalid_before_sending(self):
        agent = Agent(lambda c: time.sleep(0.5))
        self.addCleanup(agent.close)
        with colo.open() as c:
            for target in ("a" * 70000, "a" * 600, "", "shop/echo x", "a\nb", "caf\u00e9"):
                with self.assertRaises(colo.Invalid, msg=target[:20]):
                    c.dial(target)
        for name in ("port/080", "port/0", "port/65536", "port/", "Echo", "a" * 64, ""):
            with self.assertRaises(colo.Invalid, msg=name[:20]):
                colo.listen(name)


if __name__ == "__main__":
    unittest.main()
