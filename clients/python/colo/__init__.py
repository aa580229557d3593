"""colo: the Python client of colo-node (docs/protocol.md), standard library only.

    import colo
    with colo.open() as c:
        print(c.whoami())                      # Identity(namespace='shop', name='cart', ...)
        conn = c.dial("shop/echo")             # a socket: Unix pair on this node, else TCP
        ch = colo.open_channel(c, conn, 1 << 20)
        buf = ch.reserve(5); buf[:] = b"hello"; buf.release(); ch.commit(5)
        msg = ch.read(timeout=1.0); print(bytes(msg)); msg.release(); ch.release()

    with colo.listen("echo") as l:
        conn = l.accept()                      # conn.peer is the dialing pod
"""

from .channel import Channel, accept_channel, local_pair, open_channel
from .client import Client, Conn, Identity, Listener, listen, open
from .errors import (Closed, ColoError, Denied, Exists, Internal, Invalid, NotFound, ProtocolError, Refused, Timeout,
                     Unavailable, Unreachable)

__all__ = [
    "Channel", "accept_channel", "local_pair", "open_channel", "Client", "Conn", "Identity", "Listener", "listen",
    "open", "Closed", "ColoError", "Denied", "Exists", "Internal", "Invalid", "NotFound", "ProtocolError", "Refused",
    "Timeout", "Unavailable", "Unreachable",
]
