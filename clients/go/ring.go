package colo

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// ring is one single-producer single-consumer ring in shared memory. Positions only grow (mod
// 2^64); the data offset is position & (capacity-1). sync/atomic is sequentially consistent, which
// covers the acquire/release the layout asks for and the full fences around the sleep flags.
//
// The other side is another pod, trusted for nothing (as libcolo's ring.h): each side keeps its
// own positions in private memory and only publishes them; every value the peer writes (its
// position, a record's length and sequence) is read once, checked against the ring, and only then
// used, so nothing outside the ring is ever read or written whatever the peer puts there.
type ring struct {
	ctl      unsafe.Pointer // the 192 control bytes
	data     []byte         // capacity bytes
	capacity uint64
	mask     uint64
}

func newRing(seg []byte, off, capacity uint64) ring {
	return ring{
		ctl:      unsafe.Pointer(&seg[off]),
		data:     seg[off+ringHeader : off+ringHeader+capacity : off+ringHeader+capacity],
		capacity: capacity,
		mask:     capacity - 1,
	}
}

func (r *ring) u64(off uintptr) *uint64 { return (*uint64)(unsafe.Add(r.ctl, off)) }
func (r *ring) u32(off uintptr) *uint32 { return (*uint32)(unsafe.Add(r.ctl, off)) }

func (r *ring) maxMessage() uint64 { return r.capacity/2 - recordHeader }

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

// producer is the writing side of a ring.
type producer struct {
	ring
	head     uint64 // bytes committed: ours, never read back
	produced uint64 // messages committed
	tail     uint64 // the consumer's last published position, checked
	start    uint64 // where the reserved record starts
}

// reserve finds room for n payload bytes (n <= maxMessage) and returns them; nil when the ring is
// full for now, or when the consumer published an impossible position (bad says what). A record
// that would run past the end of the data is preceded by a wrap marker and starts at offset 0.
func (p *producer) reserve(n uint64) (buf []byte, bad string) {
	need := align8(recordHeader + n)
	off := p.head & p.mask
	var skip uint64
	if off+need > p.capacity {
		skip = p.capacity - off
	}
	// The consumer's position is read only when the last one seen says the ring is full: it is
	// the line the consumer writes, so reading it costs a transfer between CPUs.
	if p.head+skip+need-p.tail > p.capacity {
		t := atomic.LoadUint64(p.u64(offTail))
		// The consumer's position only moves forward, by whole records, and never past ours.
		if t&7 != 0 || t-p.tail > p.head-p.tail {
			return nil, "its read position is outside what was written"
		}
		p.tail = t
		if p.head+skip+need-p.tail > p.capacity {
			return nil, ""
		}
	}
	if skip != 0 {
		binary.LittleEndian.PutUint32(p.data[off:], recordWrap)
	}
	p.start = p.head + skip
	o := (p.start & p.mask) + recordHeader
	return p.data[o : o+n : o+n], ""
}

// commit publishes the reserved record with n payload bytes.
func (p *producer) commit(n uint64) {
	off := p.start & p.mask
	p.produced++
	binary.LittleEndian.PutUint32(p.data[off:], uint32(n))
	binary.LittleEndian.PutUint32(p.data[off+4:], uint32(p.produced))
	p.head = p.start + align8(recordHeader+n)
	*p.u64(offProduced) = p.produced // for onlookers; published by the store of head below
	atomic.StoreUint64(p.u64(offHead), p.head)
}

// consumer is the reading side of a ring.
type consumer struct {
	ring
	tail     uint64 // bytes released: ours, never read back
	consumed uint64 // messages released
	head     uint64 // the producer's last published position, checked
	need     uint64 // bytes of the record handed out by peek; 0 when none
	marks    bool   // the producer marks empty slots: wait on record headers, not on head
}

func (c *consumer) header(off uint64) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&c.data[off])))
}

// peek returns the next record's payload in place; nil when the ring is empty for now, or when
// the producer broke the protocol (bad says what). A wrap marker is consumed on the way.
func (c *consumer) peek() (msg []byte, bad string) {
	if c.marks {
		return c.peekMarked()
	}
	off := c.tail & c.mask
	// The producer's position is read only when the last one seen says the ring is empty.
	if c.tail == c.head {
		h := atomic.LoadUint64(c.u64(offHead))
		// The producer's position only moves forward, by whole records, at most a ring ahead of ours.
		if h&7 != 0 || h-c.tail > c.capacity {
			return nil, "its write position is outside the ring"
		}
		c.head = h
		if c.tail == c.head {
			// A producer that marks empty slots (libcolo) says so before its first record.
			c.marks = atomic.LoadUint32(c.u32(offProducerFlags))&ringMarks != 0
			return nil, ""
		}
	}
	word := c.header(off)
	if uint32(word) == recordWrap {
		skip := c.capacity - off
		if off == 0 || skip > c.head-c.tail {
			return nil, "a wrap marker points past what was written"
		}
		c.tail += skip
		atomic.StoreUint64(c.u64(offTail), c.tail)
		if c.tail == c.head {
			return nil, "a wrap marker is not followed by a record"
		}
		off = 0
		word = c.header(0)
	}
	room := c.head - c.tail
	if room > c.capacity-off {
		room = c.capacity - off
	}
	return c.record(off, word, room)
}

// peekMarked waits on the header at our position alone: an empty mark, a wrap marker, or a
// record the producer published (with its payload) by storing that header.
func (c *consumer) peekMarked() (msg []byte, bad string) {
	off := c.tail & c.mask
	word := c.header(off)
	if uint32(word) == recordEmpty {
		return nil, ""
	}
	if uint32(word) == recordWrap {
		if off == 0 {
			return nil, "a wrap marker is at the start of the ring"
		}
		c.tail += c.capacity - off
		atomic.StoreUint64(c.u64(offTail), c.tail)
		off = 0
		word = c.header(0)
		if uint32(word) == recordEmpty {
			return nil, ""
		}
		if uint32(word) == recordWrap {
			return nil, "a wrap marker is at the start of the ring"
		}
	}
	return c.record(off, word, c.capacity-off)
}

// record checks the record at off whose header is word, with at most room bytes it may span.
func (c *consumer) record(off, word, room uint64) (msg []byte, bad string) {
	length, sequence := uint64(uint32(word)), uint32(word>>32)
	if length > c.maxMessage() {
		return nil, "a record is longer than the ring allows"
	}
	n := align8(recordHeader + length)
	if n > room {
		return nil, "a record runs past what was written"
	}
	if sequence != uint32(c.consumed+1) {
		return nil, "a record is out of sequence"
	}
	c.need = n
	o := off + recordHeader
	return c.data[o : o+length : o+length], ""
}

// release frees the record peek returned.
func (c *consumer) release() {
	c.tail += c.need
	c.need = 0
	c.consumed++
	*c.u64(offConsumed) = c.consumed // for onlookers; published by the store of tail below
	atomic.StoreUint64(c.u64(offTail), c.tail)
}
