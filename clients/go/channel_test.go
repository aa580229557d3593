package colo

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Messages of every size up to the maximum, across many wraps, arrive whole and in order, read
// in place from the shared mapping.
func TestLocalPairCarriesMessagesInOrderAcrossWraps(t *testing.T) {
	a, b, err := LocalChannelPair(64 * 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	const count = 20000
	done := make(chan error, 1)
	go func() {
		for i := 0; i < count; i++ {
			n := (i * 7919) % (a.MaxMessage() + 1)
			buf, err := a.Reserve(ctxFor(t, 5*time.Second), n)
			if err != nil {
				done <- err
				return
			}
			for j := range buf {
				buf[j] = byte(i + j)
			}
			if err := a.Commit(n); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	base := uintptr(unsafe.Pointer(&b.mem[0]))
	for i := 0; i < count; i++ {
		msg, err := b.Read(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if want := (i * 7919) % (a.MaxMessage() + 1); len(msg) != want {
			t.Fatalf("message %d: %d bytes, want %d", i, len(msg), want)
		}
		if len(msg) > 0 {
			p := uintptr(unsafe.Pointer(&msg[0]))
			if p < base || p >= base+uintptr(len(b.mem)) {
				t.Fatalf("message %d was copied out of the shared mapping", i)
			}
		}
		for j := range msg {
			if msg[j] != byte(i+j) {
				t.Fatalf("message %d byte %d corrupt", i, j)
			}
		}
		if err := b.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReserveRefusesOversizeAndTimesOutWhenFull(t *testing.T) {
	a, b, err := LocalChannelPair(64 * 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	if _, err := a.Reserve(context.Background(), a.MaxMessage()+1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversize reserve: %v", err)
	}
	for i := 0; ; i++ {
		_, err := a.Reserve(ctxFor(t, 50*time.Millisecond), a.MaxMessage())
		if err != nil {
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || i != 2 {
				t.Fatalf("after %d messages: %v (want a timeout after 2: each takes half the ring)", i, err)
			}
			break
		}
		a.Commit(a.MaxMessage())
	}
	if _, err := b.Read(ctxFor(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	b.Release()
	// The consumer released: the producer, asleep or not, gets room again.
	if _, err := a.Reserve(ctxFor(t, time.Second), a.MaxMessage()); err != nil {
		t.Fatalf("room after release: %v", err)
	}
}

// A reader asleep on its bell is woken by a commit (the sleep flag path, not the busy-poll).
func TestSleepingReaderIsWoken(t *testing.T) {
	a, b, err := LocalChannelPair(64 * 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	sent := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // long past the busy-poll
		sent <- a.Send(context.Background(), []byte("late"))
	}()
	defer func() { <-sent }() // before the deferred Close
	start := time.Now()
	msg, err := b.Read(ctxFor(t, 5*time.Second))
	if err != nil || string(msg) != "late" {
		t.Fatalf("read: %q %v", msg, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("woken after %v", el)
	}
}

func offerPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		c, err := connFromFd(fd)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// segment makes what colo-node would send: a laid-out memfd sealed against shrink and grow, and
// the two ends of a doorbell socketpair.
func segment(t *testing.T, size int) []int {
	return segmentWith(t, size, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL, true)
}

func segmentWith(t *testing.T, size int, seals int, socketBells bool) []int {
	mem, _ := unix.MemfdCreate("t", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	unix.Ftruncate(mem, int64(size))
	m, _ := unix.Mmap(mem, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	layoutSegment(m)
	unix.Munmap(m)
	if seals != 0 {
		if _, err := unix.FcntlInt(uintptr(mem), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	var b [2]int
	if socketBells {
		b, _ = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	} else {
		b[0], _ = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		b[1], _ = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	}
	t.Cleanup(func() { closeAll([]int{mem, b[0], b[1]}) })
	return []int{mem, b[0], b[1]}
}

// What a hostile peer could hand over is refused before anything is mapped: memory it could
// shrink (SIGBUS) or grow, a size other than the offer's, doorbells it could make block.
func TestHostileMemoryAndBellsAreRefused(t *testing.T) {
	cases := map[string]struct {
		fds     []int
		offered uint64
		want    string
	}{
		"unsealed":      {segmentWith(t, 1<<20, 0, true), 1 << 20, "not sealed"},
		"shrink only":   {segmentWith(t, 1<<20, unix.F_SEAL_SHRINK, true), 1 << 20, "not sealed"},
		"write sealed":  {segmentWith(t, 1<<20, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_FUTURE_WRITE, true), 1 << 20, "sealed against writing"},
		"size != offer": {segment(t, 1<<20), 2 << 20, "offer said"},
		"too small":     {segment(t, 32<<10), 32 << 10, "outside 64 KiB to 1 GiB"},
		"eventfd bells": {segmentWith(t, 1<<20, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW, false), 1 << 20, "doorbell"},
	}
	for name, c := range cases {
		ch, err := adopt(c.fds[0], c.fds[1], c.fds[2], nil, 1, c.offered)
		if err == nil {
			ch.Close()
			t.Errorf("%s: accepted", name)
			continue
		}
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := make([]int, 2)
	unix.Pipe2(p, unix.O_CLOEXEC|unix.O_NONBLOCK)
	defer closeAll(p)
	fds := segment(t, 1<<20)
	if _, err := adopt(fds[0], p[0], p[1], nil, 1, 1<<20); !errors.Is(err, ErrProtocol) {
		t.Errorf("pipe bells: %v", err)
	}
	if err := unix.Ftruncate(fds[0], 0); err == nil {
		t.Errorf("a sealed segment could be shrunk")
	}
}

// The peer holds the same socket as our bell: clearing O_NONBLOCK and filling the queue must not
// make a commit block (the tester's bell-block attack).
func TestBellBlockAttackDoesNotBlock(t *testing.T) {
	fds := segment(t, 1<<20)
	victim, err := adopt(fds[0], fds[1], fds[2], nil, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	fl, _ := unix.FcntlInt(uintptr(fds[2]), unix.F_GETFL, 0)
	unix.FcntlInt(uintptr(fds[2]), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	for { // fill the queue to the peer's end, as the peer could
		if n, err := unix.SendmsgN(fds[2], make([]byte, 4096), nil, nil, unix.MSG_DONTWAIT); n <= 0 || err != nil {
			break
		}
	}
	atomic.StoreUint32(victim.tx.u32(offConsumerSleeping), 1) // "the peer sleeps": the victim rings
	done := make(chan error, 1)
	go func() { done <- victim.Send(context.Background(), []byte("x")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send blocked on a full doorbell")
	}
}

func sendOffer(t *testing.T, c *net.UnixConn, fds []int) {
	offer := make([]byte, 9)
	offer[0] = 'C'
	binary.LittleEndian.PutUint64(offer[1:], 1<<20)
	if _, _, err := c.WriteMsgUnix(offer, syscall.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
}

// The offer format of docs/protocol.md, and a peer that dies: the survivor's Read returns
// ErrUnavailable at once, after the messages the peer committed before.
func TestAcceptChannelAndPeerDeath(t *testing.T) {
	c0, c1 := offerPair(t)
	fds := segment(t, 1<<20)
	side0, err := adopt(fds[0], fds[1], fds[2], c0, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sendOffer(t, c0, fds)
	side1, err := AcceptChannel(ctxFor(t, time.Second), c1)
	if err != nil {
		t.Fatal(err)
	}
	defer side1.Close()
	if side1.Memory() != "memfd" {
		t.Fatalf("memory %q", side1.Memory())
	}
	side0.Send(context.Background(), []byte("last words"))
	side0.Close()
	c0.Close()
	msg, err := side1.Read(ctxFor(t, time.Second))
	if err != nil || string(msg) != "last words" {
		t.Fatalf("first read: %q %v", msg, err)
	}
	side1.Release()
	start := time.Now()
	if _, err := side1.Read(ctxFor(t, 5*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read after the peer died: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %v to notice", el)
	} // A send after "the peer went away" fails the same way, not OK into a ring nobody reads.
	if err := side1.Send(ctxFor(t, time.Second), []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("send after the peer died: %v", err)
	}
}

func TestAcceptChannelLeavesOtherBytesAlone(t *testing.T) {
	c0, c1 := offerPair(t)
	c0.Write([]byte("GET / HTTP/1.1\r\n"))
	if _, err := AcceptChannel(ctxFor(t, time.Second), c1); !errors.Is(err, ErrProtocol) {
		t.Fatalf("want ErrProtocol, got %v", err)
	}
	buf := make([]byte, 3)
	if n, _ := c1.Read(buf); string(buf[:n]) != "GET" {
		t.Fatalf("the application's bytes were consumed: %q", buf[:n])
	}
	_, c3 := offerPair(t)
	if _, err := AcceptChannel(ctxFor(t, 50*time.Millisecond), c3); !errors.Is(err, ErrTimeout) {
		t.Fatalf("no offer: want ErrTimeout, got %v", err)
	}
}

// A segment whose header points outside the mapping is refused before any pointer is made.
func TestBadSegmentsAreRefused(t *testing.T) {
	good := make([]byte, 1<<20)
	capacity := layoutSegment(good)
	if _, _, c, err := checkSegment(good); err != nil || c != capacity {
		t.Fatalf("good segment: %v", err)
	}
	cases := map[string]func(m []byte){
		"magic":            func(m []byte) { m[0] ^= 1 },
		"capacity not 2^n": func(m []byte) { binary.LittleEndian.PutUint64(m[32:], capacity-8) },
		"capacity too big": func(m []byte) { binary.LittleEndian.PutUint64(m[32:], capacity*2) },
		"ring 1 outside":   func(m []byte) { binary.LittleEndian.PutUint64(m[24:], uint64(len(m))) },
		"rings overlap":    func(m []byte) { binary.LittleEndian.PutUint64(m[24:], 128) },
		"unaligned ring":   func(m []byte) { binary.LittleEndian.PutUint64(m[16:], 72) },
	}
	for name, spoil := range cases {
		m := append([]byte(nil), good...)
		spoil(m)
		if _, _, _, err := checkSegment(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A record whose length runs past the ring is reported, not read out of bounds.
func TestCorruptRecordIsAProtocolError(t *testing.T) {
	a, b, err := LocalChannelPair(64 * 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	a.Send(context.Background(), []byte("x"))
	binary.LittleEndian.PutUint32(a.tx.data[0:], uint32(a.tx.capacity)) // the producer lies about the length
	_, err = b.Read(ctxFor(t, time.Second))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "broke the channel protocol (a record is longer than the ring allows)") {
		t.Fatalf("want ErrUnavailable for a broken protocol, got %v", err)
	}
	if _, err := b.Read(ctxFor(t, time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a broken channel stays broken: %v", err)
	}
}

// Positions the peer publishes are checked before use: a consumer that claims to have read more
// than was written, or a producer that claims more than a ring, is refused.
func TestImpossiblePositionsAreRefused(t *testing.T) {
	a, b, err := LocalChannelPair(64 * 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	atomic.StoreUint64(b.rx.u64(offTail), 1<<40) // b's side of a's ring: the consumer claims more than was written
	// The producer reads the consumer's position once the ring looks full (as libcolo's).
	var err2 error
	for i := 0; i < 3 && err2 == nil; i++ {
		if _, err2 = a.Reserve(ctxFor(t, time.Second), a.MaxMessage()); err2 == nil {
			a.Commit(a.MaxMessage())
		}
	}
	if !errors.Is(err2, ErrUnavailable) {
		t.Fatalf("producer accepted an impossible read position: %v", err2)
	}
	atomic.StoreUint64(a.rx.u64(offHead), b.tx.capacity+8) // a's incoming ring: the producer lies
	if _, err := a.Read(ctxFor(t, time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("consumer accepted an impossible write position: %v", err)
	}
}
