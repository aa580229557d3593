#!/usr/bin/env python3
"""Echo over colo in Python, speaking with libcolo's echo_server/echo_client and the Go example
byte for byte: a colo name on this node (a Unix pair, upgraded to a shared-memory channel) and a
TCP port for everyone else, served by the same code.

    echo.py serve NAME [TCP_PORT]
    echo.py dial TARGET [MESSAGE] [--count N] [--channel-bytes B] [--no-channel]
    echo.py whoami
"""

import os
import selectors
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import colo  # noqa: E402


def say(*args):
    print(*args, flush=True)


def echo_stream(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def echo_channel(conn):
    try:
        ch = colo.accept_channel(conn, timeout=2)
    except colo.ProtocolError:
        return echo_stream(conn)  # ordinary bytes came first: a plain stream
    except colo.ColoError as e:
        say(f"no channel from {conn.peer}: {e}")
        return conn.close()
    say(f"channel from {conn.peer} (memory {ch.memory})")
    n = 0
    try:
        while True:
            msg = ch.read()
            size = len(msg)
            out = ch.reserve(size)
            out[:] = msg
            out.release()
            msg.release()
            ch.release()
            ch.commit(size)
            n += 1
    except colo.ColoError as e:
        say(f"channel from {conn.peer} ended after {n} messages: {e.message}")
    finally:
        ch.close()
        conn.close()


def serve(name, port=None):
    listener = colo.listen(name)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    tcp = None
    if port:
        tcp = socket.create_server(("", int(port)), reuse_port=False)
        sel.register(tcp, selectors.EVENT_READ)
        say(f"listening on colo name {name} and tcp port {port}")
    else:
        say(f"listening on colo name {name}")
    reconnects = 0
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                try:  # never wait here for the next dial: the TCP port is served by this loop too
                    conn = listener.accept(timeout=0)
                except colo.Timeout:
                    conn = None
                if listener.reconnects != reconnects:  # colo-node restarted: a new socket, same fd
                    reconnects = listener.reconnects
                    sel.unregister(listener)
                    sel.register(listener, selectors.EVENT_READ)
                    say(f"colo-node restarted: listening on colo name {name} again")
                if conn is None:
                    continue
                say(f"accepted unix from {conn.peer}")
                threading.Thread(target=echo_channel, args=(conn,), daemon=True).start()
            else:
                conn, addr = tcp.accept()
                say(f"accepted tcp from {addr[0]}")
                threading.Thread(target=echo_stream, args=(conn,), daemon=True).start()


def dial(target, message="hello through colo", count=1, channel_bytes=1 << 20, use_channel=True):
    data = message.encode()
    with colo.open() as client:
        try:
            conn = client.dial(target)
        except colo.ColoError as e:  # colo.Denied, colo.NotFound, ... (also PermissionError, LookupError)
            print(f"echo: dial {target}: {e}", file=sys.stderr)
            return 1
        with conn:
            if conn.route:  # a Kubernetes name: how colo-node resolved it
                say(f"route {conn.route.get('via')}: {conn.route.get('why')}")
            if conn.transport == "tcp" or not use_channel:
                say(f"transport tcp, peer {conn.address}" if conn.transport == "tcp" else f"transport unix, peer {conn.peer}")
                for _ in range(count):
                    conn.sendall(data)
                    back = b""
                    while len(back) < len(data):
                        chunk = conn.recv(len(data) - len(back))
                        if not chunk:
                            raise SystemExit("echo: echo failed")
                        back += chunk
                    if back != data:
                        raise SystemExit("echo: echo mismatch")
            else:
                with colo.open_channel(client, conn, channel_bytes) as ch:
                    say(f"transport unix, peer {conn.peer}, then channel (memory {ch.memory})")
                    for i in range(count):
                        try:
                            ch.send(data, timeout=5)
                            msg = ch.read(timeout=5)
                        except colo.ColoError as e:
                            print(f"echo: channel echo {i} failed: {e.message}", file=sys.stderr)
                            return 1
                        same = msg == data
                        msg.release()
                        ch.release()
                        if not same:
                            print(f"echo: channel echo {i} failed: echo mismatch", file=sys.stderr)
                            return 1
    say(f"echo ok: {message} (x{count})")
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] not in ("serve", "dial", "whoami"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "whoami":
        with colo.open() as c:
            me = c.whoami()
            say(f"I am {me} (uid {me.uid}) on node {me.node}")
        return 0
    if argv[1] == "serve":
        return serve(*argv[2:4])
    opts = {"message": "hello through colo", "count": 1, "channel_bytes": 1 << 20, "use_channel": True}
    rest = argv[3:]
    i = 0
    while i < len(rest):
        if rest[i] == "--count":
            opts["count"], i = int(rest[i + 1]), i + 1
        elif rest[i] == "--channel-bytes":
            opts["channel_bytes"], i = int(rest[i + 1]), i + 1
        elif rest[i] == "--no-channel":
            opts["use_channel"] = False
        else:
            opts["message"] = rest[i]
        i += 1
    return dial(argv[2], **opts)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(130)
