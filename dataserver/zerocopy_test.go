package dataserver

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func TestReadReplyEncoding(t *testing.T) {
	pool := &bufPool{}
	for _, tc := range []struct {
		bufLen, lo, hi int
		size           uint64
	}{
		{4096, 0, 4096, 4096},
		{70000, 100, 5000, 1 << 20},
		{70000, 69999, 70000, 70000},
		{4096, 10, 10, 0}, // empty data, empty shard
		{4096, 10, 10, 7}, // empty data at the end of a shard
	} {
		bp := pool.Get(tc.bufLen)
		copy(*bp, randBytes(tc.bufLen, uint64(tc.lo)))
		msg := &stratapb.ReadShardResponse{Data: (*bp)[tc.lo:tc.hi], ShardSize: tc.size}
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		r := &readReply{msg: msg, pr: &pooledRead{pool: pool, buf: bp}}
		out, err := newServerCodec().Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%+v: encoded %d bytes, proto.Marshal gives %d", tc, len(got), len(want))
		}
		out.Free()
		if _, err := r.encode(); err == nil {
			t.Fatal("second encode of a reply succeeded")
		}
	}
}

func TestReadReplyForeignData(t *testing.T) {
	pool := &bufPool{}
	msg := &stratapb.ReadShardResponse{Data: []byte("not from the pool"), ShardSize: 17}
	r := &readReply{msg: msg, pr: &pooledRead{pool: pool, buf: pool.Get(4096)}}
	out, err := r.encode()
	want, _ := proto.Marshal(msg)
	if err != nil || !bytes.Equal(out.Materialize(), want) {
		t.Fatalf("encode of foreign data = %v", err)
	}
}

func TestBufPool(t *testing.T) {
	p := &bufPool{}
	for _, n := range []int{1, 4096, 4097, 65536, 1 << 20, 5<<20 + 3, MaxShardSize} {
		bp := p.Get(n)
		if len(*bp) != n || cap(*bp)&(cap(*bp)-1) != 0 || cap(*bp) < 4096 {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*bp), cap(*bp))
		}
		p.Put(bp)
	}
	big := p.Get(MaxShardSize + 1)
	if len(*big) != MaxShardSize+1 {
		t.Fatalf("Get above the largest tier: len %d", len(*big))
	}
	p.Put(big) // not a tier size: dropped
	odd := make([]byte, 5000)
	p.Put(&odd)
}

// TestServerConcurrentReads checks that pooled buffers are never reused
// while gRPC still sends them: every reply must hold exactly its bytes.
func TestServerConcurrentReads(t *testing.T) {
	_, c := startServer(t, testConfig(t, 1))
	shards := map[Key][]byte{}
	for i := range 3 {
		k := Key{ChunkID: uint64(i + 1)}
		shards[k] = randBytes(300_000+i*70_000, uint64(i))
		writeShard(t, c, k, shards[k])
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 40 {
				k := Key{ChunkID: uint64(r.IntN(3) + 1)}
				data := shards[k]
				off := r.IntN(len(data))
				n := r.IntN(len(data)-off) + 1
				resp, err := c.ReadShard(context.Background(), &stratapb.ReadShardRequest{Key: pbKey(k), Offset: uint64(off), Length: uint64(n)})
				if err != nil || !bytes.Equal(resp.Data, data[off:off+n]) {
					t.Errorf("ReadShard(%v, %d, %d): %v, content ok %v", k, off, n, err, err == nil && bytes.Equal(resp.Data, data[off:off+n]))
					return
				}
			}
		})
	}
	wg.Wait()
}
