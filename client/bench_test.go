package client

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/reedsolomon"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// The encode and reconstruct benchmarks compare the client's stripe code
// with reedsolomon's own calls on the same 4+2, 4 MiB chunk, so that any
// overhead the client adds (padding, copies, allocations) shows.

const (
	benchK     = 4
	benchM     = 2
	benchChunk = 4 << 20
)

func benchEncoder(b *testing.B) reedsolomon.Encoder {
	enc, err := reedsolomon.New(benchK, benchM)
	if err != nil {
		b.Fatal(err)
	}
	return enc
}

// BenchmarkStripeEncode is the encoding a chunk write does: padding and
// parity in place in one pooled buffer.
func BenchmarkStripeEncode(b *testing.B) {
	enc := benchEncoder(b)
	data := randBytes(benchChunk, 1)
	buf := make([]byte, benchChunk, stripeLen(benchK, benchM, benchChunk))
	copy(buf, data)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeStripe(enc, buf, benchChunk, benchK, benchM); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCRC32C is the other CPU cost per byte of the data path: a write
// checksums the chunk and every shard ((k+m)/k + 1 passes), a whole-chunk
// read checksums the chunk once.
func BenchmarkCRC32C(b *testing.B) {
	data := randBytes(benchChunk, 1)
	b.SetBytes(benchChunk)
	for b.Loop() {
		_ = crc32c(data)
	}
}

func BenchmarkRawRSEncode(b *testing.B) {
	enc := benchEncoder(b)
	shards, err := enc.Split(randBytes(benchChunk, 1))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		if err := enc.Encode(shards); err != nil {
			b.Fatal(err)
		}
	}
}

// reconstructFixture is a 4 MiB stripe with data shards 0 and 2 lost.
func reconstructFixture(b *testing.B) (reedsolomon.Encoder, [][]byte) {
	enc := benchEncoder(b)
	buf := make([]byte, benchChunk, stripeLen(benchK, benchM, benchChunk))
	copy(buf, randBytes(benchChunk, 2))
	shards, err := encodeStripe(enc, buf, benchChunk, benchK, benchM)
	if err != nil {
		b.Fatal(err)
	}
	return enc, shards
}

// BenchmarkStripeReconstruct is the CPU side of a degraded whole-chunk
// read with two data shards lost: rebuild into pooled scratch and copy
// into the caller's buffer.
func BenchmarkStripeReconstruct(b *testing.B) {
	enc, shards := reconstructFixture(b)
	ss := len(shards[0])
	l := layout{scheme: stratapb.Scheme_ERASURE, k: benchK, m: benchM, size: benchChunk, shardSize: ss}
	segs := l.segments(0, benchChunk)
	errs := make([]error, len(segs))
	errs[0], errs[2] = errors.New("lost"), errors.New("lost")
	dst := make([]byte, benchChunk)
	scratch := make([]byte, benchK*ss)
	pieces := make([][]byte, benchK+benchM)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		copy(pieces, shards)
		pieces[0], pieces[2] = nil, nil
		if err := rebuildSegments(enc, benchK, 0, ss, pieces, segs, errs, scratch, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawRSReconstructData(b *testing.B) {
	enc, shards := reconstructFixture(b)
	pieces := make([][]byte, benchK+benchM)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		copy(pieces, shards)
		pieces[0], pieces[2] = pieces[0][:0], pieces[2][:0] // reuse memory, as the client does
		if err := enc.ReconstructData(pieces); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut and BenchmarkGet run the whole client data path (pipeline,
// gRPC, checksums) against a real in-process cluster: 3 Raft metaservers
// and 6 dataservers writing shard files, on loopback, sharing the CPUs
// with the client. BenchmarkClusterPut and BenchmarkClusterGet do the same
// with 1 GiB and several MaxInflightChunks settings.
func BenchmarkPut(b *testing.B) {
	const size = 64 << 20
	e := newEnv(b, 6, &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: benchChunk, SmallThreshold: 64 << 10})
	data := randBytes(size, 3)
	b.SetBytes(size)
	for b.Loop() {
		if _, err := e.c.Put(ctxT(b), "/bench", bytes.NewReader(data), PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	const size = 64 << 20
	e := newEnv(b, 6, &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: benchChunk, SmallThreshold: 64 << 10})
	e.put("/bench", randBytes(size, 4))
	b.SetBytes(size)
	for b.Loop() {
		if _, err := e.c.Get(ctxT(b), "/bench", io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
