package colo

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// ring is one single-producer single-consumer ring in shared memory. Positions only grow (mod
// 2^64); the data offset is position & (capacity-1). sync/atomic is sequentially consistent, which
// covers the acquire/release the layout asks for and the full fences around the sleep flags.
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

// reserve finds room for a record of n payload bytes. It returns the record's start position and
// ok=false when the ring is full for now. A record that would run past the end of the data is
// preceded by a wrap marker and starts at offset 0.
func (r *ring) reserve(n uint64) (start uint64, ok bool) {
	need := align8(recordHeader + n)
	head := atomic.LoadUint64(r.u64(offHead))
	tail := atomic.LoadUint64(r.u64(offTail))
	off := head & r.mask
	var skip uint64
	if off+need > r.capacity {
		skip = r.capacity - off
	}
	if head+skip+need-tail > r.capacity {
		return 0, false
	}
	if skip != 0 {
		binary.LittleEndian.PutUint32(r.data[off:], recordWrap)
		head += skip
	}
	return head, true
}

// payload is the writable (or readable) payload of the record starting at pos.
func (r *ring) payload(pos, n uint64) []byte {
	off := (pos & r.mask) + recordHeader
	return r.data[off : off+n : off+n]
}

// commit publishes the record at start with n payload bytes.
func (r *ring) commit(start, n uint64) {
	off := start & r.mask
	produced := r.u64(offProduced)
	seq := *produced + 1 // written only here; published by the store of head below
	binary.LittleEndian.PutUint32(r.data[off:], uint32(n))
	binary.LittleEndian.PutUint32(r.data[off+4:], uint32(seq))
	*produced = seq
	atomic.StoreUint64(r.u64(offHead), start+align8(recordHeader+n))
}

// peek returns the next record (its start, length and sequence), ok=false when the ring is empty.
// A wrap marker is consumed on the way. bad is set when the record does not fit the ring: the
// producer broke the layout.
func (r *ring) peek() (start, n uint64, seq uint32, ok, bad bool) {
	tail := atomic.LoadUint64(r.u64(offTail))
	head := atomic.LoadUint64(r.u64(offHead))
	if tail == head {
		return 0, 0, 0, false, false
	}
	off := tail & r.mask
	length := binary.LittleEndian.Uint32(r.data[off:])
	if length == recordWrap {
		tail += r.capacity - off
		atomic.StoreUint64(r.u64(offTail), tail)
		if tail == head {
			return 0, 0, 0, false, false
		}
		off = 0
		length = binary.LittleEndian.Uint32(r.data[0:])
	}
	n = uint64(length)
	if n > r.maxMessage() || off+recordHeader+n > r.capacity || head-tail < align8(recordHeader+n) {
		return 0, 0, 0, false, true
	}
	return tail, n, binary.LittleEndian.Uint32(r.data[off+4:]), true, false
}

// release frees the record at start with n payload bytes.
func (r *ring) release(start, n uint64) {
	*r.u64(offConsumed)++ // written only here; published by the store of tail below
	atomic.StoreUint64(r.u64(offTail), start+align8(recordHeader+n))
}
