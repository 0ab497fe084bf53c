package dataserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// shardFileBytes builds a whole shard file in memory.
func shardFileBytes(k Key, blockSize int, data []byte) []byte {
	prefix, _ := encodePrefix(nil, k, blockSize, data, nil)
	return append(prefix, data...)
}

func TestEncodePrefixLayout(t *testing.T) {
	k := Key{ChunkID: 0x0102030405060708, Index: 9}
	data := randBytes(1300, 1)
	file := shardFileBytes(k, 512, data)
	if string(file[:4]) != "STRS" || file[4] != formatVersion {
		t.Fatalf("bad magic/version: % x", file[:5])
	}
	h, err := decodeHeader(file, k, int64(len(file)))
	if err != nil || h.blocks() != 3 || h.dataOffset() != headerSize+12 {
		t.Fatalf("decodeHeader = %+v, %v", h, err)
	}
	for i := range 3 {
		blk := data[i*512 : min((i+1)*512, len(data))]
		if got := binary.LittleEndian.Uint32(file[headerSize+4*i:]); got != crc32.Checksum(blk, castagnoli) {
			t.Fatalf("table entry %d = %08x", i, got)
		}
	}
	if !bytes.Equal(file[h.dataOffset():], data) {
		t.Fatal("data not at the data offset")
	}
}

func TestDecodeUnknownVersion(t *testing.T) {
	k := Key{ChunkID: 1}
	file := shardFileBytes(k, 512, []byte("abc"))
	file[4] = 2
	binary.LittleEndian.PutUint32(file[32:], crc32.Checksum(file[:32], castagnoli))
	_, _, err := readRange(bytes.NewReader(file), int64(len(file)), k, 0, 0, nil)
	if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("readRange of a version-2 file = %v, want ErrUnsupportedVersion", err)
	}
}

// FuzzReadShardFile feeds arbitrary files and ranges to the decoder. It must
// never panic, and whatever it returns without error must be exactly the
// requested bytes of a file whose header and blocks verify.
func FuzzReadShardFile(f *testing.F) {
	k := Key{ChunkID: 0xabcdef, Index: 2}
	for _, n := range []int{0, 1, 511, 512, 513, 2000} {
		f.Add(shardFileBytes(k, 512, randBytes(n, uint64(n))), uint64(0), uint64(0))
		f.Add(shardFileBytes(k, 512, randBytes(n, uint64(n))), uint64(n/2), uint64(n/3))
	}
	valid := shardFileBytes(k, 512, randBytes(1500, 9))
	f.Add(valid[:len(valid)-1], uint64(0), uint64(0))
	f.Add(valid[:headerSize], uint64(0), uint64(1))
	f.Add([]byte("STRS"), uint64(0), uint64(0))
	f.Add([]byte{}, uint64(1), uint64(1))
	f.Fuzz(func(t *testing.T, file []byte, off, length uint64) {
		want := k
		if len(file) >= 24 {
			// Take the key from the file so that the fuzzer gets past
			// the key check and into the block table.
			want = Key{Index: binary.LittleEndian.Uint32(file[12:]), ChunkID: binary.LittleEndian.Uint64(file[16:])}
		}
		data, size, err := readRange(bytes.NewReader(file), int64(len(file)), want, off, length, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		h, herr := decodeHeader(file, want, int64(len(file)))
		if herr != nil || h.dataLen != size {
			t.Fatalf("readRange accepted a file decodeHeader rejects: %v", herr)
		}
		if length == 0 {
			length = size - off
		}
		start := uint64(h.dataOffset()) + off
		if uint64(len(data)) != length || !bytes.Equal(data, file[start:start+length]) {
			t.Fatalf("returned %d bytes, want %d at %d", len(data), length, off)
		}
	})
}
