package dataserver

import (
	"context"
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func BenchmarkStorePut1MiB(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		name := "fsync"
		if !fsync {
			name = "nofsync"
		}
		b.Run(name, func(b *testing.B) {
			s := openTestStore(b, 1, func(o *StoreOptions) { o.Fsync = fsync })
			data := randBytes(1<<20, 1)
			crc := crcOf(data)
			ctx := context.Background()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			// A new key each time, as for new chunks: replacing a file
			// costs more on ext4, which flushes the new data on a
			// replacing rename (auto_da_alloc).
			i := 0
			for b.Loop() {
				if err := s.Put(ctx, Key{ChunkID: uint64(i)}, data, crc); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkStoreRead1MiB(b *testing.B) {
	s := openTestStore(b, 1, nil)
	data := randBytes(1<<20, 1)
	k := Key{ChunkID: 1}
	mustPut(b, s, k, data)
	ctx := context.Background()
	for _, r := range []struct {
		name        string
		off, length uint64
	}{{"whole", 0, 0}, {"4KiB-range", 300_000, 4096}} {
		b.Run(r.name, func(b *testing.B) {
			n := r.length
			if n == 0 {
				n = uint64(len(data))
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Read(ctx, k, r.off, r.length); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The gRPC benchmarks measure the whole path over loopback TCP.
func BenchmarkGRPCWrite1MiB(b *testing.B) {
	_, c := startServer(b, testConfig(b, 1))
	data := randBytes(1<<20, 1)
	req := &stratapb.WriteShardRequest{Key: &stratapb.ShardKey{}, Data: data, Crc32C: crcOf(data)}
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		req.Key.ChunkId = uint64(i)
		req.Capability = nil // dial's interceptor signs one for this chunk
		if _, err := c.WriteShard(ctx, req); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGRPCRead1MiB(b *testing.B) {
	_, c := startServer(b, testConfig(b, 1))
	data := randBytes(1<<20, 1)
	writeShard(b, c, Key{ChunkID: 1}, data)
	ctx := context.Background()
	for _, r := range []struct {
		name        string
		off, length uint64
	}{{"whole", 0, 0}, {"4KiB-range", 300_000, 4096}} {
		b.Run(r.name, func(b *testing.B) {
			req := &stratapb.ReadShardRequest{Key: pbKey(Key{ChunkID: 1}), Offset: r.off, Length: r.length}
			b.SetBytes(int64(len(data)))
			if r.length != 0 {
				b.SetBytes(int64(r.length))
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.ReadShard(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
