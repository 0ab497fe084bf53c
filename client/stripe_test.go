package client

import (
	"bytes"
	"slices"
	"testing"

	"github.com/klauspost/reedsolomon"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func TestSegments(t *testing.T) {
	l := layout{scheme: stratapb.Scheme_ERASURE, k: 4, m: 2, size: 37, shardSize: 10}
	tests := []struct {
		name   string
		off, n int
		want   []segment
	}{
		{"whole chunk", 0, 37, []segment{{0, 0, 10, 0}, {1, 0, 10, 10}, {2, 0, 10, 20}, {3, 0, 7, 30}}},
		{"first byte", 0, 1, []segment{{0, 0, 1, 0}}},
		{"last byte", 36, 1, []segment{{3, 6, 1, 0}}},
		{"inside one shard", 12, 5, []segment{{1, 2, 5, 0}}},
		{"exactly one shard", 20, 10, []segment{{2, 0, 10, 0}}},
		{"across a boundary", 8, 4, []segment{{0, 8, 2, 0}, {1, 0, 2, 2}}},
		{"across three shards", 5, 20, []segment{{0, 5, 5, 0}, {1, 0, 10, 5}, {2, 0, 5, 15}}},
		{"shard end", 9, 1, []segment{{0, 9, 1, 0}}},
		{"shard start", 10, 1, []segment{{1, 0, 1, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := l.segments(tt.off, tt.n)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("segments(%d, %d) = %v, want %v", tt.off, tt.n, got, tt.want)
			}
		})
	}
}

func TestChunkLayout(t *testing.T) {
	six := []uint32{1, 2, 3, 4, 5, 6}
	ec := func(size, ss, crc uint32) *stratapb.Chunk {
		return &stratapb.Chunk{Id: 7, Scheme: stratapb.Scheme_ERASURE, DataShards: 4, ParityShards: 2,
			Size: size, ShardSize: ss, Servers: six, Crc32C: crc}
	}
	tests := []struct {
		name       string
		ch         *stratapb.Chunk
		ok, verify bool
	}{
		{"erasure", ec(4<<20, 1<<20, 5), true, true},
		{"erasure padded", ec(10, 3, 5), true, true},
		{"cut by truncate", ec(10, 1<<20, 5), true, false},
		{"no checksum", ec(10, 3, 0), true, false},
		{"shards too small", ec(13, 3, 5), false, false},
		{"empty", ec(0, 0, 5), false, false},
		{"servers missing", &stratapb.Chunk{Scheme: stratapb.Scheme_ERASURE, DataShards: 4, ParityShards: 2, Size: 8, ShardSize: 2, Servers: six[:5]}, false, false},
		{"replicated", &stratapb.Chunk{Scheme: stratapb.Scheme_REPLICATED, DataShards: 1, ParityShards: 2, Size: 8, ShardSize: 8, Servers: six[:3], Crc32C: 1}, true, true},
		{"replicated k=2", &stratapb.Chunk{Scheme: stratapb.Scheme_REPLICATED, DataShards: 2, ParityShards: 1, Size: 8, ShardSize: 8, Servers: six[:3]}, false, false},
		{"unknown scheme", &stratapb.Chunk{DataShards: 1, ParityShards: 2, Size: 8, ShardSize: 8, Servers: six[:3]}, false, false},
		{"too wide", &stratapb.Chunk{Scheme: stratapb.Scheme_ERASURE, DataShards: 200, ParityShards: 57, Size: 8, ShardSize: 1, Servers: make([]uint32, 257)}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := chunkLayout(tt.ch)
			if (err == nil) != tt.ok {
				t.Fatalf("chunkLayout: err = %v, want ok=%v", err, tt.ok)
			}
			if err == nil && l.verifiable != tt.verify {
				t.Fatalf("verifiable = %v, want %v", l.verifiable, tt.verify)
			}
		})
	}
}

func TestCheckPolicy(t *testing.T) {
	tests := []struct {
		name string
		p    *stratapb.StripePolicy
		ok   bool
	}{
		{"default", &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 4 << 20}, true},
		{"no parity", &stratapb.StripePolicy{DataShards: 1, ChunkSize: 1}, true},
		{"nil", nil, false},
		{"no data shards", &stratapb.StripePolicy{ParityShards: 2, ChunkSize: 4 << 20}, false},
		{"too wide", &stratapb.StripePolicy{DataShards: 200, ParityShards: 57, ChunkSize: 4 << 20}, false},
		{"zero chunk", &stratapb.StripePolicy{DataShards: 4, ParityShards: 2}, false},
		{"huge chunk", &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 64 << 20}, false},
	}
	for _, tt := range tests {
		if err := checkPolicy(tt.p); (err == nil) != tt.ok {
			t.Errorf("%s: checkPolicy = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// TestEncodeStripeRoundTrip checks that encodeStripe lays data out as
// reedsolomon's Split does (so dataservers rebuilding shards with the
// library agree with the client) and that its parity verifies.
func TestEncodeStripeRoundTrip(t *testing.T) {
	for _, km := range [][2]int{{4, 2}, {1, 2}, {2, 1}, {6, 3}, {10, 4}, {3, 0}} {
		k, m := km[0], km[1]
		enc, err := reedsolomon.New(k, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{1, 2, k - 1, k, k + 1, 1000, 64<<10 - 1, 4 << 20} {
			if size < 1 {
				continue
			}
			data := randBytes(size, uint64(size*k+m))
			buf := make([]byte, size, stripeLen(k, m, size))
			copy(buf, data)
			shards, err := encodeStripe(enc, buf, size, k, m)
			if err != nil {
				t.Fatalf("%d+%d size %d: %v", k, m, size, err)
			}
			if got := bytes.Join(shards[:k], nil)[:size]; !bytes.Equal(got, data) {
				t.Fatalf("%d+%d size %d: data shards do not hold the data", k, m, size)
			}
			if ok, err := enc.Verify(shards); m > 0 && (!ok || err != nil) {
				t.Fatalf("%d+%d size %d: parity does not verify: %v", k, m, size, err)
			}
			if size >= k {
				split, _ := enc.Split(append([]byte(nil), data...))
				for i := range k {
					if !bytes.Equal(split[i], shards[i]) {
						t.Fatalf("%d+%d size %d: shard %d differs from reedsolomon.Split", k, m, size, i)
					}
				}
			}
		}
	}
}

// TestEncodeStripeDirtyBuffer checks that padding is zeroed even when the
// pooled buffer held older data.
func TestEncodeStripeDirtyBuffer(t *testing.T) {
	enc, _ := reedsolomon.New(4, 2)
	buf := bytes.Repeat([]byte{0xff}, stripeLen(4, 2, 10))
	copy(buf, "0123456789")
	shards, err := encodeStripe(enc, buf, 10, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := shards[3]; !bytes.Equal(got, []byte{'9', 0, 0}) {
		t.Fatalf("last data shard = %q, want padding zeroed", got)
	}
}

func TestCombinations(t *testing.T) {
	got := combinations([]int{1, 2, 3, 4}, 2)
	want := [][]int{{1, 2}, {1, 3}, {1, 4}, {2, 3}, {2, 4}, {3, 4}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("combinations = %v, want %v", got, want)
	}
	if got := combinations([]int{1, 2}, 0); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("combinations(_, 0) = %v, want one empty set", got)
	}
}

// TestSearchConsistent finds the silently wrong shard(s) of a stripe by
// the chunk checksum, for every single bad shard and some pairs.
func TestSearchConsistent(t *testing.T) {
	const k, m, size = 4, 2, 1000
	enc, _ := reedsolomon.New(k, m)
	data := randBytes(size, 1)
	buf := make([]byte, size, stripeLen(k, m, size))
	copy(buf, data)
	shards, _ := encodeStripe(enc, buf, size, k, m)
	l := layout{scheme: stratapb.Scheme_ERASURE, k: k, m: m, size: size, shardSize: ceilDiv(size, k), verifiable: true}
	want := crc32c(data)
	for _, bad := range [][]int{{0}, {1}, {3}, {4}, {5}, {0, 2}, {1, 5}} {
		full := make([][]byte, k+m)
		for i := range shards {
			full[i] = slices.Clone(shards[i])
		}
		for _, j := range bad {
			full[j][7] ^= 0x5a
		}
		dst := make([]byte, size)
		wrong, ok := searchConsistent(enc, full, l, want, dst)
		if !ok || !bytes.Equal(dst, data) {
			t.Fatalf("bad %v: not recovered (ok=%v)", bad, ok)
		}
		// A bad parity shard leaves the data consistent as read, so only
		// the bad data shards need leaving out.
		wantWrong := slices.DeleteFunc(slices.Clone(bad), func(j int) bool { return j >= k })
		if !slices.Equal(wrong, wantWrong) {
			t.Fatalf("bad %v: blamed %v", bad, wrong)
		}
	}
	// Three wrong shards of 4+2 cannot be told apart.
	full := make([][]byte, k+m)
	for i := range shards {
		full[i] = slices.Clone(shards[i])
	}
	for _, j := range []int{0, 1, 2} {
		full[j][0] ^= 1
	}
	if _, ok := searchConsistent(enc, full, l, want, make([]byte, size)); ok {
		t.Fatal("three bad shards: claimed a match")
	}
}

func TestBufferPool(t *testing.T) {
	var bp bufferPool
	b := bp.get(100 << 10)
	if len(*b) != 100<<10 || cap(*b) != 128<<10 {
		t.Fatalf("get(100 KiB): len %d cap %d", len(*b), cap(*b))
	}
	bp.put(b)
	b2 := bp.get(70 << 10)
	if len(*b2) != 70<<10 || cap(*b2) != 128<<10 {
		t.Fatalf("get(70 KiB): len %d cap %d", len(*b2), cap(*b2))
	}
	small := bp.get(10)
	if len(*small) != 10 {
		t.Fatalf("small buffer len %d", len(*small))
	}
	bp.put(small) // ignored, must not panic
}
