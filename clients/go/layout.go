package colo

import (
	"encoding/binary"
	"fmt"
)

// The channel segment (docs/protocol.md, libcolo/include/colo/channel_layout.h): a 64-byte header,
// then two rings, each three 64-byte lines of control and `capacity` data bytes. Little-endian.
const (
	segmentMagic   = 0x314e4843304c4f43 // "COLOCHN1"
	segmentVersion = 1
	segmentHeader  = 64
	ringHeader     = 192
	minRingData    = 4096
	maxRingData    = 1 << 31
	minSegment     = 64 << 10
	maxSegment     = 1 << 30

	// Ring control offsets.
	offHead             = 0
	offProduced         = 8
	offProducerFlags    = 16 // ringMarks: every record is followed by an empty mark
	offTail             = 64
	offConsumed         = 72
	offConsumerSleeping = 128
	offProducerSleeping = 132

	recordHeader = 8
	recordWrap   = 0xffffffff // a record length meaning "skip to the start of the ring"
	recordEmpty  = 0xfffffffe // a record length meaning "nothing here yet" (marks)
	ringMarks    = 1          // producer_flags: the producer marks the slot after each record
)

// layoutSegment lays out a zeroed segment of len(mem) bytes, as colo-node does, and returns the
// ring capacity (0 when too small). Used for channels within one process.
func layoutSegment(mem []byte) uint64 {
	total := uint64(len(mem))
	if total < segmentHeader+2*(ringHeader+minRingData) {
		return 0
	}
	capacity := uint64(1)
	for capacity*2 <= (total-segmentHeader-2*ringHeader)/2 {
		capacity *= 2
	}
	le := binary.LittleEndian
	le.PutUint64(mem[0:], segmentMagic)
	le.PutUint32(mem[8:], segmentVersion)
	le.PutUint32(mem[12:], 2)
	le.PutUint64(mem[16:], segmentHeader)
	le.PutUint64(mem[24:], segmentHeader+ringHeader+capacity)
	le.PutUint64(mem[32:], capacity)
	return capacity
}

// checkSegment validates a mapped segment before any pointer is taken into it: the peer and the
// agent are trusted no further than the bounds of the mapping.
func checkSegment(mem []byte) (off0, off1, capacity uint64, err error) {
	if len(mem) < segmentHeader {
		return 0, 0, 0, fmt.Errorf("segment of %d bytes has no header", len(mem))
	}
	le := binary.LittleEndian
	if le.Uint64(mem[0:]) != segmentMagic || le.Uint32(mem[8:]) != segmentVersion || le.Uint32(mem[12:]) != 2 {
		return 0, 0, 0, fmt.Errorf("no colo segment header (magic, version 1, 2 rings)")
	}
	off0, off1, capacity = le.Uint64(mem[16:]), le.Uint64(mem[24:]), le.Uint64(mem[32:])
	size := uint64(len(mem))
	if capacity < minRingData || capacity > maxRingData || capacity&(capacity-1) != 0 || capacity > size {
		return 0, 0, 0, fmt.Errorf("ring capacity %d is not a power of two in 4 KiB to 2 GiB within the segment", capacity)
	}
	for _, off := range []uint64{off0, off1} {
		if off%64 != 0 || off < segmentHeader || off > size || size-off < ringHeader+capacity {
			return 0, 0, 0, fmt.Errorf("ring at offset %d does not fit the %d-byte segment", off, size)
		}
	}
	if lo, hi := min64(off0, off1), max64(off0, off1); lo+ringHeader+capacity > hi {
		return 0, 0, 0, fmt.Errorf("rings at %d and %d overlap", off0, off1)
	}
	return off0, off1, capacity, nil
}

func min64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
