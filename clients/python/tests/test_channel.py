"""Channels without colo-node: the rings between threads, the offer on a socket pair, a peer that
dies, and segments that lie."""

import os
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import colo  # noqa: E402
from colo import channel  # noqa: E402


class LocalPair(unittest.TestCase):
    def test_messages_arrive_whole_and_in_order_across_wraps(self):
        a, b = colo.local_pair(64 * 1024)
        count, limit = 3000, a.max_message + 1
        errors = []

        def produce():
            try:
                for i in range(count):
                    n = (i * 7919) % limit
                    buf = a.reserve(n, timeout=5)
                    buf[:] = bytes((i + j) & 0xFF for j in range(n)) if n < 64 else bytes([i & 0xFF]) * n
                    buf.release()
                    a.commit(n)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=produce)
        t.start()
        for i in range(count):
            msg = b.read(timeout=5)
            n = (i * 7919) % limit
            self.assertEqual(len(msg), n, f"message {i}")
            want = bytes((i + j) & 0xFF for j in range(n)) if n < 64 else bytes([i & 0xFF]) * n
            self.assertEqual(bytes(msg), want, f"message {i}")
            msg.release()
            b.release()
        t.join()
        self.assertEqual(errors, [])
        a.close()
        b.close()

    def test_read_is_in_place(self):
        a, b = colo.local_pair(64 * 1024)
        a.send(b"in place")
        msg = b.read(timeout=1)
        self.assertEqual(msg.obj, b.memory_view.obj, "the message view is not a view of the shared mapping")
        msg.release()
        b.release()
        a.close()
        b.close()

    def test_full_ring_times_out_and_oversize_is_refused(self):
        a, b = colo.local_pair(64 * 1024)
        with self.assertRaises(colo.Invalid):
            a.reserve(a.max_message + 1)
        for _ in range(2):  # each message takes half the ring
            a.reserve(a.max_message, timeout=0.1).release()
            a.commit(a.max_message)
        with self.assertRaises(colo.Timeout):
            a.reserve(a.max_message, timeout=0.05)
        b.read(timeout=1).release()
        b.release()
        a.reserve(a.max_message, timeout=1).release()  # room again
        a.close()
        b.close()

    def test_sleeping_reader_is_woken(self):
        a, b = colo.local_pair(64 * 1024)
        threading.Timer(0.1, lambda: a.send(b"late")).start()
        start = time.monotonic()
        msg = b.read(timeout=5)
        self.assertEqual(bytes(msg), b"late")
        self.assertLess(time.monotonic() - start, 2)
        msg.release()
        b.release()
        a.close()
        b.close()


def segment(size=1 << 20):
    mem = os.memfd_create("t", os.MFD_CLOEXEC)
    os.ftruncate(mem, size)
    import mmap
    with mmap.mmap(mem, size, mmap.MAP_SHARED) as m:
        channel.layout_segment(m)
    return [mem, os.eventfd(0, os.EFD_NONBLOCK), os.eventfd(0, os.EFD_NONBLOCK)]


class Offer(unittest.TestCase):
    def test_offer_then_peer_death(self):
        s0, s1 = socket.socketpair()
        fds = segment()
        side0 = colo.Channel(fds[0], fds[1], fds[2], s0.fileno(), 0)
        socket.send_fds(s0, [b"C" + struct.pack("<Q", 1 << 20)], fds)
        for fd in fds:
            os.close(fd)
        side1 = colo.accept_channel(s1, timeout=1)
        self.assertEqual(side1.memory, "memfd")
        side0.send(b"last words")
        side0.close()
        s0.close()
        msg = side1.read(timeout=1)
        self.assertEqual(bytes(msg), b"last words")
        msg.release()
        side1.release()
        start = time.monotonic()
        with self.assertRaises(colo.Unavailable):
            side1.read(timeout=5)
        self.assertLess(time.monotonic() - start, 1)
        side1.close()
        s1.close()

    def test_other_bytes_stay_on_the_pair(self):
        s0, s1 = socket.socketpair()
        s0.sendall(b"GET / HTTP/1.1\r\n")
        with self.assertRaises(colo.ProtocolError):
            colo.accept_channel(s1, timeout=1)
        self.assertEqual(s1.recv(3), b"GET")
        quiet0, quiet1 = socket.socketpair()
        with self.assertRaises(colo.Timeout):
            colo.accept_channel(quiet1, timeout=0.05)
        quiet0.close()
        with self.assertRaises(colo.Unavailable):
            colo.accept_channel(quiet1, timeout=1)


class Segments(unittest.TestCase):
    def test_lying_headers_are_refused(self):
        good = bytearray(1 << 20)
        cap = channel.layout_segment(good)
        self.assertEqual(channel.check_segment(good)[2], cap)
        spoil = {
            "magic": lambda m: m.__setitem__(0, m[0] ^ 1),
            "capacity not 2^n": lambda m: struct.pack_into("<Q", m, 32, cap - 8),
            "capacity too big": lambda m: struct.pack_into("<Q", m, 32, cap * 2),
            "ring outside": lambda m: struct.pack_into("<Q", m, 24, len(m)),
            "rings overlap": lambda m: struct.pack_into("<Q", m, 24, 128),
        }
        for name, f in spoil.items():
            m = bytearray(good)
            f(m)
            with self.assertRaises(ValueError, msg=name):
                channel.check_segment(m)

    def test_a_record_longer_than_the_ring_is_a_protocol_error(self):
        a, b = colo.local_pair(64 * 1024)
        a.send(b"x")
        struct.pack_into("<I", a._tx.data, 0, a._tx.cap)  # the producer lies about the length
        with self.assertRaisesRegex(colo.Unavailable, r"broke the channel protocol \(a record is longer than the ring allows\)"):
            b.read(timeout=1)
        with self.assertRaises(colo.Unavailable):  # for good
            b.read(timeout=1)
        a.close()
        b.close()

    def test_impossible_positions_are_refused(self):
        a, b = colo.local_pair(64 * 1024)
        b._rx.ctl[channel.TAIL] = 64  # b's side of a's ring: the consumer lies
        with self.assertRaises(colo.Unavailable):
            a.reserve(8, timeout=1)
        a._rx.ctl[channel.HEAD] = b._tx.cap + 8  # a's incoming ring: the producer lies
        with self.assertRaises(colo.Unavailable):
            a.read(timeout=1)
        a.close()
        b.close()


if __name__ == "__main__":
    unittest.main()
