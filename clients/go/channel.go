package colo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Channel is a shared-memory channel on a Unix pair: two single-producer single-consumer rings,
// one each way, in memory both pods map. Messages are written and read in place:
//
//	buf, err := ch.Reserve(ctx, n) // n writable bytes inside the ring
//	... build the message in buf ...
//	ch.Commit(n)
//
//	msg, err := ch.Read(ctx) // the next message, inside the ring: valid until Release
//	... use msg ...
//	ch.Release()
//
// One goroutine writes and one reads at a time (each side of a Channel is single-producer,
// single-consumer). When the pair closes (the peer died or closed it) a waiting call returns
// ErrUnavailable instead of hanging; messages the peer committed before are still read first. A
// peer that breaks the ring protocol (a position or record that does not fit) is treated as gone:
// ErrUnavailable, for good, and nothing outside the ring is touched.
type Channel struct {
	mem      []byte
	memory   string
	bell     int // this side's end of the doorbell socketpair: slept on, and written to wake the peer
	pair     int // a duplicate of the pair's socket, polled for hang-up; -1 within one process
	tx       producer
	rx       consumer
	reserved uint64 // bytes reserved and not yet committed
	pending  bool
	reading  []byte // the message Read handed out, until Release
	broken   string // why the peer is no longer trusted: every call fails with it
	closed   bool
}

// spins is how many times a side looks at the ring before it sleeps on its doorbell: a few
// microseconds, longer than a round trip, so a busy peer is never slept on.
const spins = 20000

// OpenChannel asks colo-node for a channel of about `bytes` (64 KiB to 1 GiB) and hands it to the
// peer over conn, a Unix pair from Dial or Accept: this side is side 0. Do it before any other
// bytes flow on the pair; keep conn open for the channel's life.
func (c *Client) OpenChannel(ctx context.Context, conn net.Conn, bytes uint64) (*Channel, error) {
	uc, ok := unixConnOf(conn)
	if !ok {
		return nil, newError("channel", "", ErrInvalid, "a channel needs a Unix pair (this connection is %s)", conn.RemoteAddr().Network())
	}
	var r struct {
		Memory string `json:"memory"`
		Bytes  uint64 `json:"bytes"`
	}
	fds, err := c.c.call(ctx, "channel", "", map[string]any{"bytes": bytes}, &r)
	if err != nil {
		return nil, err
	}
	if len(fds) != 3 {
		closeAll(fds)
		return nil, newError("channel", "", ErrProtocol, "reply carried %d descriptors, not memory and two doorbells", len(fds))
	}
	defer closeAll(fds)
	offer := make([]byte, 9)
	offer[0] = 'C'
	binary.LittleEndian.PutUint64(offer[1:], r.Bytes) // the size made (hugepages round up)
	stop := watchConn(ctx, uc)
	_, _, err = uc.WriteMsgUnix(offer, syscall.UnixRights(fds...), nil)
	stop()
	if err != nil {
		return nil, newError("channel", "", ErrUnavailable, "the peer went away before the channel was handed over: %v", err)
	}
	return adopt(fds[0], fds[1], fds[2], uc, 0, r.Bytes)
}

// AcceptChannel takes the channel the peer offers on conn (this side is side 1). It consumes
// nothing but the offer: when the first bytes on the pair are something else, they stay there and
// the error is ErrProtocol.
func AcceptChannel(ctx context.Context, conn net.Conn) (*Channel, error) {
	uc, ok := unixConnOf(conn)
	if !ok {
		return nil, newError("channel", "", ErrInvalid, "a channel needs a Unix pair")
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, newError("channel", "", ErrInternal, "%v", err)
	}
	stop := watchConn(ctx, uc)
	defer stop()
	var first [1]byte
	var n int
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, peekErr = syscall.Recvfrom(int(fd), first[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return peekErr != syscall.EAGAIN
	})
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err)):
		return nil, newError("channel", "", ErrTimeout, "no channel offered: %v", err)
	case err != nil || peekErr != nil:
		return nil, newError("channel", "", ErrUnavailable, "waiting for the offer: %v", firstErr(err, peekErr))
	case n == 0:
		return nil, newError("channel", "", ErrUnavailable, "the peer closed the pair before offering a channel")
	case first[0] != 'C':
		return nil, newError("channel", "", ErrProtocol, "the peer did not offer a channel")
	}
	offer := make([]byte, 9)
	oob := make([]byte, syscall.CmsgSpace(maxFds*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(offer, oob)
	fds := parseRights(oob[:oobn])
	defer closeAll(fds)
	if err != nil || n != 9 || flags&syscall.MSG_CTRUNC != 0 || len(fds) != 3 {
		return nil, newError("channel", "", ErrProtocol, "the offer is not 'C' + u64 with memory and two doorbells")
	}
	return adopt(fds[0], fds[1], fds[2], uc, 1, binary.LittleEndian.Uint64(offer[1:]))
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// watchConn applies the context's deadline and cancellation to conn until the returned func runs.
func watchConn(ctx context.Context, uc *net.UnixConn) func() {
	a := agentConn{c: uc}
	return a.watch(ctx)
}

// checkMemory refuses memory the peer could shrink or grow under our mapping (SIGBUS), and any
// size but the offered one in 64 KiB..1 GiB: before anything is mapped.
func checkMemory(mem int, offered uint64) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(mem, &st); err != nil {
		return 0, fmt.Errorf("fstat(channel memory): %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, fmt.Errorf("channel memory is not a memory file")
	}
	seals, err := unix.FcntlInt(uintptr(mem), unix.F_GET_SEALS, 0)
	if err != nil || seals&(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW) != unix.F_SEAL_SHRINK|unix.F_SEAL_GROW {
		return 0, fmt.Errorf("channel memory is not sealed against shrinking and growing (F_SEAL_SHRINK|F_SEAL_GROW)")
	}
	// Sealed against writing, it cannot be mapped for writing: the peer's fault, not ours.
	if seals&(unix.F_SEAL_WRITE|unix.F_SEAL_FUTURE_WRITE) != 0 {
		return 0, fmt.Errorf("channel memory is sealed against writing (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE)")
	}
	if st.Size < minSegment || st.Size > maxSegment {
		return 0, fmt.Errorf("channel memory of %d bytes is outside 64 KiB to 1 GiB", st.Size)
	}
	if uint64(st.Size) != offered {
		return 0, fmt.Errorf("channel memory of %d bytes, but the offer said %d", st.Size, offered)
	}
	return st.Size, nil
}

// checkBell accepts only one end of an AF_UNIX stream socketpair as a doorbell.
func checkBell(fd int) error {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("channel doorbell is not a Unix stream socket")
	}
	domain, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err1 != nil || err2 != nil || domain != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		return fmt.Errorf("channel doorbell is not a Unix stream socket")
	}
	return nil
}

// adopt maps the segment and takes its own copies of the descriptors it keeps (the caller closes
// its own): side s keeps bell s, its end of the doorbell socketpair.
func adopt(mem, bell0, bell1 int, pair *net.UnixConn, side int, offered uint64) (*Channel, error) {
	ch := &Channel{bell: -1, pair: -1}
	fail := func(sentinel error, format string, args ...any) (*Channel, error) {
		ch.Close()
		return nil, newError("channel", "", sentinel, format, args...)
	}
	for _, b := range []int{bell0, bell1} {
		if err := checkBell(b); err != nil {
			return fail(ErrProtocol, "%v", err)
		}
	}
	size, err := checkMemory(mem, offered)
	if err != nil {
		return fail(ErrProtocol, "%v", err)
	}
	var fs unix.Statfs_t
	ch.memory = "memfd"
	if unix.Fstatfs(mem, &fs) == nil && uint32(fs.Type) == unix.HUGETLBFS_MAGIC {
		ch.memory = "hugepages"
	}
	m, err := unix.Mmap(mem, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(ErrInternal, "mmap(channel): %v", err)
	}
	ch.mem = m
	off0, off1, capacity, err := checkSegment(m)
	if err != nil {
		return fail(ErrProtocol, "channel memory: %v", err)
	}
	r0, r1 := newRing(m, off0, capacity), newRing(m, off1, capacity)
	bells := [2]int{bell0, bell1}
	if ch.bell, err = dupCloexec(bells[side]); err != nil {
		return fail(ErrInternal, "dup: %v", err)
	}
	if pair != nil {
		if ch.pair, err = dupFd(pair); err != nil {
			return fail(ErrInternal, "dup: %v", err)
		}
	}
	if side == 1 {
		r0, r1 = r1, r0
	}
	ch.tx, ch.rx = producer{ring: r0}, consumer{ring: r1}
	return ch, nil
}

func dupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// LocalChannelPair makes the same rings between two parts of one process (the "same process"
// case, and tests): side 0 and side 1 of a channel in ordinary memory.
func LocalChannelPair(bytes uint64) (side0, side1 *Channel, err error) {
	if bytes < 64*1024 {
		return nil, nil, newError("channel", "", ErrInvalid, "at least 64 KiB")
	}
	if bytes > maxSegment {
		return nil, nil, newError("channel", "", ErrInvalid, "at most 1 GiB")
	}
	mem, err := unix.MemfdCreate("colo-channel", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, newError("channel", "", ErrInternal, "memfd_create: %v", err)
	}
	defer unix.Close(mem)
	if err := unix.Ftruncate(mem, int64(bytes)); err != nil {
		return nil, nil, newError("channel", "", ErrInternal, "ftruncate: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(mem), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return nil, nil, newError("channel", "", ErrInternal, "F_ADD_SEALS: %v", err)
	}
	m, err := unix.Mmap(mem, 0, int(bytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, newError("channel", "", ErrInternal, "mmap: %v", err)
	}
	ok := layoutSegment(m) != 0
	unix.Munmap(m)
	if !ok {
		return nil, nil, newError("channel", "", ErrInvalid, "too small")
	}
	bells, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, newError("channel", "", ErrInternal, "socketpair: %v", err)
	}
	defer closeAll(bells[:])
	if side0, err = adopt(mem, bells[0], bells[1], nil, 0, bytes); err != nil {
		return nil, nil, err
	}
	if side1, err = adopt(mem, bells[0], bells[1], nil, 1, bytes); err != nil {
		side0.Close()
		return nil, nil, err
	}
	return side0, side1, nil
}

// Memory is "hugepages" or "memfd" (ordinary memory).
func (ch *Channel) Memory() string { return ch.memory }

// MaxMessage is the largest message a Reserve accepts: half a ring, less the record header.
func (ch *Channel) MaxMessage() int { return int(ch.tx.maxMessage()) }

// Reserve returns n writable bytes in the outgoing ring, waiting for room until the context ends.
// Write the message there, then Commit. A second Reserve before Commit replaces the first.
func (ch *Channel) Reserve(ctx context.Context, n int) ([]byte, error) {
	if err := ch.usable("reserve"); err != nil {
		return nil, err
	}
	if n < 0 || uint64(n) > ch.tx.maxMessage() {
		return nil, newError("reserve", "", ErrInvalid, "message of %d bytes; at most %d", n, ch.tx.maxMessage())
	}
	sleeping := ch.tx.u32(offProducerSleeping)
	for {
		for i := 0; i < spins; i++ {
			if buf, bad := ch.tx.reserve(uint64(n)); buf != nil || bad != "" {
				return ch.reserved1(buf, bad, n)
			}
		}
		atomic.StoreUint32(sleeping, 1) // then a full fence (sequentially consistent store)
		if buf, bad := ch.tx.reserve(uint64(n)); buf != nil || bad != "" {
			atomic.StoreUint32(sleeping, 0)
			return ch.reserved1(buf, bad, n)
		}
		err := ch.sleep(ctx)
		atomic.StoreUint32(sleeping, 0)
		if err != nil {
			return nil, ch.waitError("reserve", err, "channel full")
		}
	}
}

func (ch *Channel) reserved1(buf []byte, bad string, n int) ([]byte, error) {
	if bad != "" {
		return nil, ch.peerBroke("reserve", bad)
	}
	ch.reserved, ch.pending = uint64(n), true
	return buf, nil
}

// Commit publishes the reserved message with its first n bytes (n at most the reservation).
func (ch *Channel) Commit(n int) error {
	if err := ch.usable("commit"); err != nil {
		return err
	}
	if !ch.pending || n < 0 || uint64(n) > ch.reserved {
		return newError("commit", "", ErrInvalid, "commit of %d bytes without a reservation that large", n)
	}
	ch.pending = false
	ch.tx.commit(uint64(n))
	if atomic.LoadUint32(ch.tx.u32(offConsumerSleeping)) != 0 {
		ringBell(ch.bell)
	}
	return nil
}

// Send copies p into the ring as one message: Reserve, copy, Commit.
func (ch *Channel) Send(ctx context.Context, p []byte) error {
	buf, err := ch.Reserve(ctx, len(p))
	if err != nil {
		return err
	}
	copy(buf, p)
	return ch.Commit(len(p))
}

// Read returns the next message in place, waiting until the context ends. The slice points into
// the shared ring: it stays valid until Release, and must not be kept after.
func (ch *Channel) Read(ctx context.Context) ([]byte, error) {
	if err := ch.usable("read"); err != nil {
		return nil, err
	}
	if ch.reading != nil {
		return ch.reading, nil
	}
	sleeping := ch.rx.u32(offConsumerSleeping)
	for {
		for i := 0; i < spins; i++ {
			if msg, bad := ch.rx.peek(); msg != nil || bad != "" {
				return ch.took(msg, bad)
			}
		}
		atomic.StoreUint32(sleeping, 1)
		if msg, bad := ch.rx.peek(); msg != nil || bad != "" {
			atomic.StoreUint32(sleeping, 0)
			return ch.took(msg, bad)
		}
		err := ch.sleep(ctx)
		atomic.StoreUint32(sleeping, 0)
		if err != nil {
			if msg, bad := ch.rx.peek(); msg != nil || bad != "" { // what the peer sent before it went is still ours
				return ch.took(msg, bad)
			}
			return nil, ch.waitError("read", err, "no message")
		}
	}
}

func (ch *Channel) took(msg []byte, bad string) ([]byte, error) {
	if bad != "" {
		return nil, ch.peerBroke("read", bad)
	}
	ch.reading = msg
	return msg, nil
}

// Release frees the message Read returned.
func (ch *Channel) Release() error {
	if err := ch.usable("release"); err != nil {
		return err
	}
	if ch.reading == nil {
		return newError("release", "", ErrInvalid, "nothing read")
	}
	ch.reading = nil
	ch.rx.release()
	if atomic.LoadUint32(ch.rx.u32(offProducerSleeping)) != 0 {
		ringBell(ch.bell)
	}
	return nil
}

func (ch *Channel) usable(op string) error {
	if ch.closed {
		return newError(op, "", ErrInvalid, "channel closed")
	}
	if ch.broken != "" {
		return newError(op, "", ErrUnavailable, "%s", ch.broken)
	}
	return nil
}

func (ch *Channel) peerBroke(op, what string) error {
	ch.broken = "the peer went away: it broke the channel protocol (" + what + ")"
	return newError(op, "", ErrUnavailable, "%s", ch.broken)
}

// Close unmaps the channel and closes its descriptors (not the pair it was made on).
func (ch *Channel) Close() error {
	if ch.closed {
		return nil
	}
	ch.closed = true
	if ch.mem != nil {
		unix.Munmap(ch.mem)
		ch.mem = nil
	}
	for _, fd := range []*int{&ch.bell, &ch.pair} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return nil
}

// ringBell sends one byte to the peer's end. MSG_DONTWAIT: never blocks, whatever the peer did
// to the shared file flags; EAGAIN means the peer has unread wake-ups, so it wakes anyway.
func ringBell(bell int) {
	unix.Sendto(bell, []byte{1}, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
}

var (
	errPeerGone = errors.New("the peer went away")
	errDeadline = errors.New("deadline")
)

// sleep waits on this side's bell until it rings, the pair hangs up, or the context ends. A
// context without a deadline but with a Done channel is looked at every 50 ms.
func (ch *Channel) sleep(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return errDeadline
	}
	timeout := -1
	if d, ok := ctx.Deadline(); ok {
		ms := time.Until(d).Milliseconds()
		if ms <= 0 {
			return errDeadline
		}
		timeout = int(ms)
	}
	if ctx.Done() != nil && (timeout < 0 || timeout > 50) {
		timeout = 50
	}
	fds := []unix.PollFd{{Fd: int32(ch.bell), Events: unix.POLLIN}, {Fd: int32(ch.pair), Events: unix.POLLRDHUP}}
	if ch.pair < 0 {
		fds = fds[:1]
	}
	n, err := unix.Poll(fds, timeout)
	if err != nil && err != unix.EINTR {
		return err
	}
	if n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0 {
		var v [64]byte
		got, _, err := unix.Recvfrom(ch.bell, v[:], unix.MSG_DONTWAIT)
		if got == 0 && err == nil || err != nil && err != unix.EAGAIN && err != unix.EINTR {
			return errPeerGone // the peer's end of the bell is closed
		}
	}
	if len(fds) > 1 && fds[1].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
		return errPeerGone
	}
	return nil // woken, timed out a slice, or interrupted: the caller looks again
}

func (ch *Channel) waitError(op string, err error, what string) error {
	switch err {
	case errPeerGone:
		ch.broken = "the peer went away" // every later call fails too, sends included
		return newError(op, "", ErrUnavailable, "the peer went away")
	case errDeadline:
		return newError(op, "", ErrTimeout, "%s", what)
	default:
		return newError(op, "", ErrInternal, "poll: %v", err)
	}
}
