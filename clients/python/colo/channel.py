"""Shared-memory channels (docs/protocol.md, "Channel segment layout"): two single-producer
single-consumer rings in memory both pods map, written and read in place, with doorbell wake-ups (one byte
over a Unix stream socketpair, sent with MSG_DONTWAIT).

Python has no atomics. On x86-64, loads and stores of aligned 8-byte words are single instructions
and the hardware keeps stores in order (TSO), which is what the layout's acquire/release asks for;
the one full fence (after a sleep flag is set, before the ring is looked at again) is an
uncontended lock round trip, a locked instruction in CPython. Other architectures need real
barriers that the standard library does not offer, so channels refuse to start there."""

import fcntl
import mmap
import os
import platform
import select
import socket
import stat
import struct
import threading
import time

from . import errors, wire

MAGIC = 0x314E4843304C4F43  # "COLOCHN1"
VERSION = 1
SEGMENT_HEADER = 64
RING_HEADER = 192
MIN_RING_DATA = 4096
MAX_RING_DATA = 1 << 31
MIN_SEGMENT, MAX_SEGMENT = 64 << 10, 1 << 30
SEALS_NEEDED = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
# Sealed against writing, the memory cannot be mapped for writing: refused as the peer's fault.
SEALS_REFUSED = fcntl.F_SEAL_WRITE | getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)
RECORD_HEADER = 8
RECORD_WRAP = 0xFFFFFFFF
# Ring control, as indexes into the control block viewed as u64 (and u32 for the sleep flags).
HEAD, PRODUCED, TAIL, CONSUMED = 0, 1, 8, 9
CONSUMER_SLEEPING, PRODUCER_SLEEPING = 32, 33
# Indexes into Channel._p, this side's private positions.
HEAD_OWN, PRODUCED_OWN, TAIL_SEEN, TAIL_OWN, CONSUMED_OWN, HEAD_SEEN = range(6)
_MOD = 1 << 64
SPINS = 2000  # looks at the ring before sleeping: some tens of microseconds in CPython

_SUPPORTED = platform.machine() in ("x86_64", "AMD64")
_fence_lock = threading.Lock()


def _fence():
    _fence_lock.acquire()
    _fence_lock.release()


def _align8(n):
    return (n + 7) & ~7


def layout_segment(mem):
    """Lays out a zeroed segment (as colo-node does); returns the ring capacity, 0 if too small."""
    total = len(mem)
    if total < SEGMENT_HEADER + 2 * (RING_HEADER + MIN_RING_DATA):
        return 0
    cap = 1
    while cap * 2 <= (total - SEGMENT_HEADER - 2 * RING_HEADER) // 2:
        cap *= 2
    struct.pack_into("<QIIQQQ", mem, 0, MAGIC, VERSION, 2, SEGMENT_HEADER, SEGMENT_HEADER + RING_HEADER + cap, cap)
    return cap


def check_segment(mem):
    """(offset 0, offset 1, capacity) of a mapped segment, or ValueError: nothing is trusted
    beyond the bounds of the mapping."""
    size = len(mem)
    if size < SEGMENT_HEADER:
        raise ValueError("segment has no header")
    magic, version, rings, off0, off1, cap = struct.unpack_from("<QIIQQQ", mem, 0)
    if magic != MAGIC or version != VERSION or rings != 2:
        raise ValueError("no colo segment header (magic, version 1, 2 rings)")
    if cap < MIN_RING_DATA or cap > MAX_RING_DATA or cap & (cap - 1) or cap > size:
        raise ValueError(f"ring capacity {cap} is not a power of two in 4 KiB to 2 GiB within the segment")
    for off in (off0, off1):
        if off % 64 or off < SEGMENT_HEADER or off > size or size - off < RING_HEADER + cap:
            raise ValueError(f"ring at offset {off} does not fit the {size}-byte segment")
    if min(off0, off1) + RING_HEADER + cap > max(off0, off1):
        raise ValueError(f"rings at {off0} and {off1} overlap")
    return off0, off1, cap


def check_memory(fd, offered):
    """The size of the channel memory, after the checks libcolo makes (docs/protocol.md): a
    regular file sealed against shrinking and growing, of the offered size, 64 KiB to 1 GiB."""
    try:
        st = os.fstat(fd)
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS) if stat.S_ISREG(st.st_mode) else 0
    except OSError as e:
        raise errors.ProtocolError("channel", f"channel memory: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise errors.ProtocolError("channel", "channel memory is not a memory file")
    if seals & SEALS_NEEDED != SEALS_NEEDED:
        raise errors.ProtocolError("channel", "channel memory is not sealed against shrinking and growing (F_SEAL_SHRINK|F_SEAL_GROW)")
    if seals & SEALS_REFUSED:
        raise errors.ProtocolError("channel", "channel memory is sealed against writing (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE)")
    if not MIN_SEGMENT <= st.st_size <= MAX_SEGMENT:
        raise errors.ProtocolError("channel", f"channel memory of {st.st_size} bytes is outside 64 KiB to 1 GiB")
    if st.st_size != offered:
        raise errors.ProtocolError("channel", f"channel memory of {st.st_size} bytes, but the offer said {offered}")
    return st.st_size


def _bell_socket(fd):
    """A socket object on a copy of `fd`, which must be a Unix stream socket (one end of the
    doorbell socketpair): an eventfd or a pipe could be made to block by the peer that passed it."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError("not a socket")
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        raise errors.ProtocolError("channel", "channel doorbell is not a Unix stream socket") from None
    if s.family != socket.AF_UNIX or s.type != socket.SOCK_STREAM:
        s.close()
        raise errors.ProtocolError("channel", "channel doorbell is not a Unix stream socket")
    return s


class _Ring:
    def __init__(self, view, off, cap):
        self.ctl = view[off:off + RING_HEADER].cast("Q")
        self.flags = view[off:off + RING_HEADER].cast("I")
        self.data = view[off + RING_HEADER:off + RING_HEADER + cap]
        self.cap, self.mask = cap, cap - 1
        self.max_message = cap // 2 - RECORD_HEADER

    def release_views(self):
        for v in (self.ctl, self.flags, self.data):
            v.release()


class Channel:
    """One side of a channel. reserve(n) -> writable memoryview, then commit(n); read() ->
    memoryview of the next message inside the ring (valid until release()), then release().
    One thread writes and one reads. When the pair closes, a waiting call raises Unavailable
    (after the messages the peer committed before it went)."""

    def __init__(self, mem_fd, bell0, bell1, pair_fd, side, offered):
        if not _SUPPORTED:
            raise errors.Internal("channel", f"the Python client's rings need x86-64 (this is {platform.machine()})")
        self._mm = None
        self._bell, self._pair = None, None
        try:
            # Side s keeps bell s, its end of the doorbell socketpair; both are checked.
            bells = [_bell_socket(bell0), _bell_socket(bell1)]
            self._bell = bells[side]
            bells[1 - side].close()
            self._pair = os.dup(pair_fd) if pair_fd is not None else None
            size = check_memory(mem_fd, offered)
            self.memory = "hugepages" if _is_hugetlbfs(mem_fd) else "memfd"
            try:
                self._mm = mmap.mmap(mem_fd, size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
            except (OSError, ValueError) as e:
                raise errors.Internal("channel", f"mmap(channel): {e}") from None
            self._view = memoryview(self._mm)
            try:
                off0, off1, cap = check_segment(self._view)
            except ValueError as e:
                raise errors.ProtocolError("channel", f"channel memory: {e}") from None
        except BaseException:
            self.close()
            raise
        rings = (_Ring(self._view, off0, cap), _Ring(self._view, off1, cap))
        self._tx, self._rx = rings[side], rings[1 - side]
        self._pending = None  # (start, length) of a reservation
        self._reading = None  # (offset, length, record bytes) of a message read and not yet released
        self._broken = ""
        # Private positions: [own head, messages produced, consumer's tail seen, own tail,
        # messages consumed, producer's head seen].
        self._p = [0, 0, 0, 0, 0, 0]

    @property
    def max_message(self):
        return self._tx.max_message

    # The peer is trusted for nothing (as libcolo's ring.h): each side keeps its own positions
    # here and only publishes them; what the peer publishes is read once and checked before use.

    def _usable(self, op):
        if self._broken:
            raise errors.Unavailable(op, self._broken)
        if self._mm is None:
            raise errors.Invalid(op, "channel closed")

    def _peer_broke(self, op, what):
        self._broken = f"the peer went away: it broke the channel protocol ({what})"
        raise errors.Unavailable(op, self._broken)

    # ---- producer ----
    def _try_reserve(self, n):
        r, p = self._tx, self._p
        t = r.ctl[TAIL]
        if t & 7 or (t - p[TAIL_SEEN]) % _MOD > (p[HEAD_OWN] - p[TAIL_SEEN]) % _MOD:
            self._peer_broke("reserve", "its read position is outside what was written")
        p[TAIL_SEEN] = t
        need = _align8(RECORD_HEADER + n)
        off = p[HEAD_OWN] & r.mask
        skip = r.cap - off if off + need > r.cap else 0
        if (p[HEAD_OWN] + skip + need - t) % _MOD > r.cap:
            return None
        if skip:
            struct.pack_into("<I", r.data, off, RECORD_WRAP)
        return (p[HEAD_OWN] + skip) % _MOD

    def reserve(self, n, timeout=None):
        """n writable bytes in the outgoing ring (a memoryview into shared memory)."""
        self._usable("reserve")
        if n < 0 or n > self._tx.max_message:
            raise errors.Invalid("reserve", f"message of {n} bytes; at most {self._tx.max_message}")
        start = self._wait(lambda: self._try_reserve(n), self._tx, PRODUCER_SLEEPING, timeout, "reserve", "channel full")
        self._pending = (start, n)
        off = (start & self._tx.mask) + RECORD_HEADER
        return self._tx.data[off:off + n]

    def commit(self, n):
        self._usable("commit")
        if self._pending is None or not 0 <= n <= self._pending[1]:
            raise errors.Invalid("commit", f"commit of {n} bytes without a reservation that large")
        start, _ = self._pending
        self._pending = None
        r, p = self._tx, self._p
        p[PRODUCED_OWN] += 1
        struct.pack_into("<II", r.data, start & r.mask, n, p[PRODUCED_OWN] & 0xFFFFFFFF)
        p[HEAD_OWN] = (start + _align8(RECORD_HEADER + n)) % _MOD
        r.ctl[PRODUCED] = p[PRODUCED_OWN] % _MOD
        r.ctl[HEAD] = p[HEAD_OWN]  # x86 keeps stores in order: the record is visible first
        _fence()
        if r.flags[CONSUMER_SLEEPING]:
            self._ring()

    def send(self, data, timeout=None):
        """Copies `data` into the ring as one message."""
        buf = self.reserve(len(data), timeout)
        buf[:] = data
        buf.release()
        self.commit(len(data))

    # ---- consumer ----
    def _try_read(self):
        r, p = self._rx, self._p
        h = r.ctl[HEAD]
        tail = p[TAIL_OWN]
        if h & 7 or (h - tail) % _MOD > r.cap or (h - tail) % _MOD < (p[HEAD_SEEN] - tail) % _MOD:
            self._peer_broke("read", "its write position is outside the ring")
        p[HEAD_SEEN] = h
        if tail == h:
            return None
        off = tail & r.mask
        length, seq = struct.unpack_from("<II", r.data, off)
        if length == RECORD_WRAP:
            skip = r.cap - off
            if off == 0 or skip > (h - tail) % _MOD:
                self._peer_broke("read", "a wrap marker points past what was written")
            tail = p[TAIL_OWN] = (tail + skip) % _MOD
            r.ctl[TAIL] = tail
            if tail == h:
                self._peer_broke("read", "a wrap marker is not followed by a record")
            off = 0
            length, seq = struct.unpack_from("<II", r.data, 0)
        if length > r.max_message:
            self._peer_broke("read", "a record is longer than the ring allows")
        need = _align8(RECORD_HEADER + length)
        if need > (h - tail) % _MOD or off + need > r.cap:
            self._peer_broke("read", "a record runs past what was written")
        if seq != (p[CONSUMED_OWN] + 1) & 0xFFFFFFFF:
            self._peer_broke("read", "a record is out of sequence")
        return off, length, need

    def read(self, timeout=None):
        """The next message, in place: a memoryview valid until release()."""
        self._usable("read")
        if self._reading is None:
            self._reading = self._wait(self._try_read, self._rx, CONSUMER_SLEEPING, timeout, "read", "no message")
        off, n, _ = self._reading
        return self._rx.data[off + RECORD_HEADER:off + RECORD_HEADER + n]

    def release(self):
        self._usable("release")
        if self._reading is None:
            raise errors.Invalid("release", "nothing read")
        _, _, need = self._reading
        self._reading = None
        r, p = self._rx, self._p
        p[TAIL_OWN] = (p[TAIL_OWN] + need) % _MOD
        p[CONSUMED_OWN] += 1
        r.ctl[CONSUMED] = p[CONSUMED_OWN] % _MOD
        r.ctl[TAIL] = p[TAIL_OWN]
        _fence()
        if r.flags[PRODUCER_SLEEPING]:
            self._ring()

    # ---- waiting ----
    def _ring(self):
        """One byte to the peer's end. MSG_DONTWAIT: never blocks, whatever the peer did to the
        shared file flags. A full queue means the peer has wake-ups pending; a closed peer end is
        seen by its sleeping side (POLLHUP), so neither is an error here."""
        try:
            self._bell.send(b"\1", socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except OSError:
            pass

    def _wait(self, attempt, r, flag, timeout, op, what):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for _ in range(SPINS):
                got = attempt()
                if got is not None:
                    return got
            r.flags[flag] = 1
            _fence()
            got = attempt()
            if got is not None:
                r.flags[flag] = 0
                return got
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                r.flags[flag] = 0
                raise errors.Timeout(op, what)
            gone = self._sleep(left)
            r.flags[flag] = 0
            if gone:
                got = attempt()  # what the peer committed before it went is still ours
                if got is not None:
                    return got
                self._broken = "the peer went away"  # every later call fails too, sends included
                raise errors.Unavailable(op, self._broken)

    def _sleep(self, timeout):
        """Waits on this side's bell; True when the pair hung up."""
        p = select.poll()
        bell = self._bell.fileno()
        p.register(bell, select.POLLIN)
        if self._pair is not None:
            p.register(self._pair, select.POLLRDHUP)
        events = p.poll(None if timeout is None else max(1, int(timeout * 1000)))
        gone = False
        for fd, ev in events:
            if fd == bell and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    if not self._bell.recv(64, socket.MSG_DONTWAIT):
                        gone = True  # the peer's end of the bell is closed
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    gone = True
            elif fd == self._pair and ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                gone = True
        return gone

    @property
    def memory_view(self):
        return self._view

    def close(self):
        """Unmaps the segment (once no view of it is held) and closes the descriptors."""
        if self._bell is not None:
            self._bell.close()
        if self._pair is not None:
            try:
                os.close(self._pair)
            except OSError:
                pass
        self._bell, self._pair = None, None
        if self._mm is not None:
            for r in (getattr(self, "_tx", None), getattr(self, "_rx", None)):
                if r is not None:
                    r.release_views()
            try:
                self._view.release()
                self._mm.close()
            except (BufferError, AttributeError):
                pass  # a message view is still held: the mapping goes with it
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_hugetlbfs(fd):
    # os.fstatvfs has no f_type; a hugetlbfs file's block size is its huge page size (2 MiB up).
    return os.fstat(fd).st_blksize >= 2 << 20


def open_channel(client, conn, nbytes, timeout=5.0):
    """Asks colo-node for a channel of about `nbytes` (64 KiB to 1 GiB) and hands it to the peer
    over `conn`, a Unix pair from dial/accept: this side is side 0. Do it before other bytes flow
    on the pair, and keep the pair open for the channel's life."""
    if conn.family != socket.AF_UNIX:
        raise errors.Invalid("channel", "a channel needs a Unix pair (this connection is TCP)")
    reply, fds = client.call("channel", {"bytes": nbytes}, timeout)
    try:
        if len(fds) != 3:
            raise errors.ProtocolError("channel", f"reply carried {len(fds)} descriptors, not memory and two doorbells")
        size = reply.get("bytes") if isinstance(reply, dict) else None
        if not isinstance(size, int) or size < 0:
            raise errors.ProtocolError("channel", "the reply did not say the channel's size")
        offer = b"C" + struct.pack("<Q", size)  # the size made: hugepages round up
        conn.settimeout(timeout)
        try:
            socket.send_fds(conn, [offer], fds)
        except OSError as e:
            raise errors.Unavailable("channel", f"the peer went away before the channel was handed over: {e}") from None
        finally:
            conn.settimeout(None)
        return Channel(fds[0], fds[1], fds[2], conn.fileno(), 0, size)
    finally:
        wire.close_fds(fds)


def accept_channel(conn, timeout=5.0):
    """Takes the channel the peer offers on `conn` (this side is side 1). Only the offer is
    consumed: other first bytes stay on the pair, and ProtocolError is raised."""
    ready, _, _ = select.select([conn], [], [], timeout)
    if not ready:
        raise errors.Timeout("channel", "no channel offered")
    first = conn.recv(1, socket.MSG_PEEK)
    if not first:
        raise errors.Unavailable("channel", "the peer closed the pair before offering a channel")
    if first != b"C":
        raise errors.ProtocolError("channel", "the peer did not offer a channel")
    msg, fds, flags, _ = socket.recv_fds(conn, 9, wire.MAX_FDS)
    try:
        if len(msg) != 9 or len(fds) != 3 or flags & socket.MSG_CTRUNC:
            raise errors.ProtocolError("channel", "the offer is not 'C' + u64 with memory and two doorbells")
        return Channel(fds[0], fds[1], fds[2], conn.fileno(), 1, struct.unpack_from("<Q", msg, 1)[0])
    finally:
        wire.close_fds(fds)


def local_pair(nbytes=1 << 20):
    """The same rings between two parts of one process: (side 0, side 1) in ordinary memory."""
    if not MIN_SEGMENT <= nbytes <= MAX_SEGMENT:
        raise errors.Invalid("channel", "64 KiB to 1 GiB")
    mem = os.memfd_create("colo-channel", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    bells = []
    try:
        os.ftruncate(mem, nbytes)
        with mmap.mmap(mem, nbytes, mmap.MAP_SHARED) as m:
            if not layout_segment(m):
                raise errors.Invalid("channel", "too small")
        fcntl.fcntl(mem, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        bells = [a.detach(), b.detach()]
        return Channel(mem, bells[0], bells[1], None, 0, nbytes), Channel(mem, bells[0], bells[1], None, 1, nbytes)
    except OSError as e:
        raise errors.Internal("channel", f"local pair: {e}") from None
    finally:
        wire.close_fds([mem] + bells)
