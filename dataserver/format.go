package dataserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/strata-hpc/strata/internal/crc32c"
	"hash/crc32"
	"io"
)

// On-disk format of one shard file (version 1), all integers little-endian:
//
//	offset size field
//	0      4    magic "STRS"
//	4      1    format version (1)
//	5      3    reserved, zero
//	8      4    block size in bytes
//	12     4    shard index
//	16     8    chunk id
//	24     8    data length in bytes
//	32     4    CRC32C of bytes [0, 32)
//	36     4*n  CRC32C of each data block, n = ceil(data length / block size)
//	36+4n  ...  data
//
// The key is stored in the header as well as in the file name so that a file
// moved or renamed by mistake is detected instead of served as another shard.
// The block table sits before the data so that a range read needs only the
// table entries of the blocks it touches. The table itself is not covered by
// a checksum: a damaged entry makes its block fail verification, which can
// cost a shard but never returns wrong bytes.
const (
	formatVersion = 1
	headerSize    = 36
	crcSize       = 4

	// MaxShardSize bounds one shard. It matches the largest gRPC message
	// (metaconn.MaxMsgSize), so nothing larger could arrive anyway.
	MaxShardSize = 64 << 20

	// MinBlockSize and MaxBlockSize bound the checksum block size. Small
	// blocks cost table space and CRC calls; large ones make small range
	// reads read (and verify) more than they return.
	MinBlockSize = 512
	MaxBlockSize = 16 << 20

	// DefaultBlockSize is the checksum block size of new shards.
	DefaultBlockSize = 64 << 10
)

var magic = [4]byte{'S', 'T', 'R', 'S'}

// castagnoli is the CRC32C table; hash/crc32 uses the SSE4.2/ARM64
// instructions for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors of the store. Callers test them with errors.Is; the gRPC
// service maps them to status codes in one place (toStatus).
var (
	ErrNotFound           = errors.New("dataserver: shard not found")
	ErrCorrupt            = errors.New("dataserver: shard corrupt")
	ErrNoSpace            = errors.New("dataserver: no disk has room")
	ErrInvalid            = errors.New("dataserver: invalid argument")
	ErrUnsupportedVersion = errors.New("dataserver: unsupported shard format version")
	ErrClosed             = errors.New("dataserver: store closed")
)

// CorruptError describes a shard that failed verification. It matches
// ErrCorrupt with errors.Is. Block is the failing data block, or -1 when the
// header, the block table or the file length is at fault.
type CorruptError struct {
	Key    Key
	Block  int64
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Block < 0 {
		return fmt.Sprintf("dataserver: shard corrupt: chunk %016x shard %d: %s", e.Key.ChunkID, e.Key.Index, e.Reason)
	}
	return fmt.Sprintf("dataserver: shard corrupt: chunk %016x shard %d block %d: %s", e.Key.ChunkID, e.Key.Index, e.Block, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(k Key, block int64, format string, args ...any) error {
	return &CorruptError{Key: k, Block: block, Reason: fmt.Sprintf(format, args...)}
}

// Key names a shard: the chunk it belongs to and its index in the stripe.
type Key struct {
	ChunkID uint64
	Index   uint32
}

func (k Key) String() string { return fmt.Sprintf("%016x.%d", k.ChunkID, k.Index) }

// header is the decoded fixed header of a shard file.
type header struct {
	blockSize uint32
	key       Key
	dataLen   uint64
}

func (h header) blocks() uint64 {
	return (h.dataLen + uint64(h.blockSize) - 1) / uint64(h.blockSize)
}

// dataOffset is where the data starts in the file.
func (h header) dataOffset() int64 { return headerSize + crcSize*int64(h.blocks()) }

func (h header) fileSize() int64 { return h.dataOffset() + int64(h.dataLen) }

// encodePrefix builds the header and block table for data in buf (reused
// when large enough) and returns it together with the CRC32C of all of data.
// With shift (the CRC operator for one block length) the whole-data CRC is
// combined from the block CRCs instead of computed in a second pass: on
// this hardware CRC32C runs at ~6 GB/s, so the second pass cost a tenth of
// a write's CPU. A nil shift computes it directly.
func encodePrefix(buf []byte, k Key, blockSize int, data []byte, shift *crc32c.Shift) ([]byte, uint32) {
	h := header{blockSize: uint32(blockSize), key: k, dataLen: uint64(len(data))}
	n := int(h.dataOffset())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf[0:4], magic[:])
	buf[4] = formatVersion
	buf[5], buf[6], buf[7] = 0, 0, 0
	binary.LittleEndian.PutUint32(buf[8:], h.blockSize)
	binary.LittleEndian.PutUint32(buf[12:], k.Index)
	binary.LittleEndian.PutUint64(buf[16:], k.ChunkID)
	binary.LittleEndian.PutUint64(buf[24:], h.dataLen)
	binary.LittleEndian.PutUint32(buf[32:], crc32.Checksum(buf[:32], castagnoli))
	var whole uint32
	for i, off := 0, 0; off < len(data); i, off = i+1, off+blockSize {
		blk := data[off:min(off+blockSize, len(data))]
		sum := crc32.Checksum(blk, castagnoli)
		binary.LittleEndian.PutUint32(buf[headerSize+crcSize*i:], sum)
		switch {
		case shift != nil && int64(len(blk)) == shift.Len():
			whole = shift.Combine(whole, sum)
		case shift != nil:
			whole = crc32c.Combine(whole, sum, int64(len(blk)))
		default:
			whole = crc32.Update(whole, castagnoli, blk)
		}
	}
	return buf, whole
}

// decodeHeader checks a header against the key it is expected to hold and
// the size of its file. Every failure is an ErrCorrupt, except a version
// this code does not know, which is ErrUnsupportedVersion: such a file was
// written by a newer dataserver and is not damaged.
func decodeHeader(b []byte, want Key, fileSize int64) (header, error) {
	if len(b) < headerSize {
		return header{}, corrupt(want, -1, "truncated header: %d bytes", len(b))
	}
	if [4]byte(b[0:4]) != magic {
		return header{}, corrupt(want, -1, "bad magic %q", b[0:4])
	}
	if b[4] != formatVersion {
		return header{}, fmt.Errorf("%w: %d in shard %v (this server reads version %d)", ErrUnsupportedVersion, b[4], want, formatVersion)
	}
	if got, sum := binary.LittleEndian.Uint32(b[32:]), crc32.Checksum(b[:32], castagnoli); got != sum {
		return header{}, corrupt(want, -1, "header crc32c %08x, want %08x", sum, got)
	}
	if b[5]|b[6]|b[7] != 0 {
		return header{}, corrupt(want, -1, "reserved header bytes set")
	}
	h := header{
		blockSize: binary.LittleEndian.Uint32(b[8:]),
		key:       Key{Index: binary.LittleEndian.Uint32(b[12:]), ChunkID: binary.LittleEndian.Uint64(b[16:])},
		dataLen:   binary.LittleEndian.Uint64(b[24:]),
	}
	return h, h.check(want, fileSize)
}

func (h header) check(want Key, fileSize int64) error {
	switch {
	case h.blockSize < MinBlockSize || h.blockSize > MaxBlockSize:
		return corrupt(want, -1, "block size %d out of range", h.blockSize)
	case h.dataLen > MaxShardSize:
		return corrupt(want, -1, "data length %d too large", h.dataLen)
	case h.key != want:
		return corrupt(want, -1, "file holds shard %v", h.key)
	case fileSize < h.fileSize():
		return corrupt(want, -1, "truncated: %d bytes, want %d", fileSize, h.fileSize())
	case fileSize > h.fileSize():
		return corrupt(want, -1, "%d trailing bytes", fileSize-h.fileSize())
	}
	return nil
}

// readHeader reads and checks the header of the shard file r.
func readHeader(r io.ReaderAt, fileSize int64, k Key) (header, error) {
	var hb [headerSize]byte
	n, err := r.ReadAt(hb[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return header{}, fmt.Errorf("dataserver: read header of %v: %w", k, err)
	}
	return decodeHeader(hb[:n], k, fileSize)
}

// checkRange validates [off, off+length) against a shard of size bytes and
// resolves length 0 to "up to the end".
func checkRange(k Key, size, off, length uint64) (uint64, error) {
	if off > size {
		return 0, fmt.Errorf("%w: offset %d past the end of shard %v (%d bytes)", ErrInvalid, off, k, size)
	}
	if length == 0 {
		return size - off, nil
	}
	if length > size-off {
		return 0, fmt.Errorf("%w: range [%d, +%d) past the end of shard %v (%d bytes)", ErrInvalid, off, length, k, size)
	}
	return length, nil
}

// readRange reads bytes [off, off+length) of the shard stored in r (a file of
// fileSize bytes). It reads the header, the table entries of the blocks the
// range touches and those blocks, straight into one buffer whose sub-slice
// is returned: no copy. Every block is verified before anything is returned.
// It also returns the shard's data length. alloc, if not nil, provides the
// block buffer (a pooled one); it is called at most once.
func readRange(r io.ReaderAt, fileSize int64, k Key, off, length uint64, alloc func(int) []byte) ([]byte, uint64, error) {
	h, err := readHeader(r, fileSize, k)
	if err != nil {
		return nil, 0, err
	}
	if length, err = checkRange(k, h.dataLen, off, length); err != nil {
		return nil, 0, err
	}
	if length == 0 {
		return []byte{}, h.dataLen, nil
	}
	bs := uint64(h.blockSize)
	first, last := off/bs, (off+length-1)/bs
	table := make([]byte, crcSize*(last-first+1))
	if err := readFull(r, table, headerSize+crcSize*int64(first), k); err != nil {
		return nil, 0, err
	}
	start, end := first*bs, min((last+1)*bs, h.dataLen)
	var buf []byte
	if alloc != nil {
		buf = alloc(int(end - start))
	} else {
		buf = make([]byte, end-start)
	}
	if err := readFull(r, buf, h.dataOffset()+int64(start), k); err != nil {
		return nil, 0, err
	}
	for i := range last - first + 1 {
		blk := buf[i*bs : min((i+1)*bs, uint64(len(buf)))]
		want := binary.LittleEndian.Uint32(table[crcSize*i:])
		if got := crc32.Checksum(blk, castagnoli); got != want {
			return nil, 0, corrupt(k, int64(first+i), "crc32c %08x, want %08x", got, want)
		}
	}
	return buf[off-start : off-start+length], h.dataLen, nil
}

// readFull fills b from r at off; a short read means the file shrank under
// us, which is corruption.
func readFull(r io.ReaderAt, b []byte, off int64, k Key) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return corrupt(k, -1, "short read at offset %d: %d of %d bytes", off, n, len(b))
	}
	return fmt.Errorf("dataserver: read shard %v at offset %d: %w", k, off, err)
}
