"""Channels without colo-node: the rings between threads, the offer on a socket pair, a peer that
dies, and segments that lie."""

import fcntl
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


def segment(size=1 << 20, seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL, socket_bells=True):
    """What colo-node hands out: a laid-out memfd sealed against shrink and grow, and the two ends
    of a doorbell socketpair (or, to test refusals, weaker seals and eventfds)."""
    mem = os.memfd_create("t", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(mem, size)
    import mmap
    if size:
        with mmap.mmap(mem, size, mmap.MAP_SHARED) as m:
            channel.layout_segment(m)
    if seals:
        fcntl.fcntl(mem, fcntl.F_ADD_SEALS, seals)
    if socket_bells:
        a, b = socket.socketpair()
        return [mem, a.detach(), b.detach()]
    return [mem, os.eventfd(0, os.EFD_NONBLOCK), os.eventfd(0, os.EFD_NONBLOCK)]


class Hostile(unittest.TestCase):
    """What a hostile peer could hand over is refused with a ColoError before anything is mapped."""

    def refused(self, fds, offered, want):
        try:
            with self.assertRaisesRegex(colo.ProtocolError, want):
                colo.Channel(fds[0], fds[1], fds[2], None, 1, offered)
        finally:
            for fd in fds:
                os.close(fd)

    def test_unsealed_memory(self):
        self.refused(segment(seals=0), 1 << 20, "not sealed")
        self.refused(segment(seals=fcntl.F_SEAL_SHRINK), 1 << 20, "not sealed")

    def test_memory_sealed_against_writing(self):  # was Internal with mmap's text
        self.refused(segment(seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE), 1 << 20, "sealed against writing")
        self.refused(segment(seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | 0x0010), 1 << 20, "sealed against writing")

    def test_size_other_than_the_offer(self):
        self.refused(segment(), 2 << 20, "offer said")

    def test_empty_memory(self):  # was a bare ValueError from mmap
        self.refused(segment(0), 0, "outside 64 KiB to 1 GiB")

    def test_sparse_2gib_memory(self):  # was mapped and populated: 2 GiB of RSS
        self.refused(segment(0, seals=0), 2 << 30, "not sealed")
        fds = segment(0, seals=0)
        os.ftruncate(fds[0], 2 << 30)
        fcntl.fcntl(fds[0], fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        self.refused(fds, 2 << 30, "outside 64 KiB to 1 GiB")

    def test_bells_that_are_not_unix_stream_sockets(self):
        self.refused(segment(socket_bells=False), 1 << 20, "doorbell")
        r, w = os.pipe()
        fds = segment()
        os.close(fds[1]), os.close(fds[2])
        self.refused([fds[0], r, w], 1 << 20, "doorbell")

    def test_a_sealed_segment_cannot_be_shrunk(self):
        fds = segment()
        with self.assertRaises(PermissionError):
            os.ftruncate(fds[0], 0)
        for fd in fds:
            os.close(fd)

    def test_bell_block_attack_does_not_block_a_send(self):
        fds = segment()
        victim = colo.Channel(fds[0], fds[1], fds[2], None, 1, 1 << 20)
        os.set_blocking(fds[2], True)  # the peer shares our end: flags cleared, queue filled
        with socket.socket(fileno=os.dup(fds[2])) as peer_copy:
            try:
                while True:
                    peer_copy.send(b"x" * 4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        victim._tx.flags[channel.CONSUMER_SLEEPING] = 1  # "the peer sleeps": the victim rings
        done = []
        t = threading.Thread(target=lambda: done.append(victim.send(b"y", timeout=1) or "sent"), daemon=True)
        t.start()
        t.join(5)
        self.assertEqual(done, ["sent"], "send blocked on a full doorbell")
        victim.close()
        for fd in fds:
            os.close(fd)


class Offer(unittest.TestCase):
    def test_offer_then_peer_death(self):
        s0, s1 = socket.socketpair()
        fds = segment()
        side0 = colo.Channel(fds[0], fds[1], fds[2], s0.fileno(), 0, 1 << 20)
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
        with self.assertRaises(colo.Unavailable):  # a send after "the peer went away" fails too
            side1.send(b"x", timeout=1)
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
