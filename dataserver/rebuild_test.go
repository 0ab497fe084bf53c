package dataserver

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// rebuildRig is a 4+2 stripe of one 4 MiB chunk on six real dataservers,
// and a seventh that rebuilds shards of it over gRPC.
type rebuildRig struct {
	servers []*Server
	clients []stratapb.DataClient
	repair  stratapb.RepairClient
	shards  [][]byte
	chunk   *stratapb.Chunk
}

func newRebuildRig(t testing.TB) *rebuildRig {
	t.Helper()
	const k, m, size = 4, 2, 4 << 20
	data := randBytes(size, 7)
	enc, err := reedsolomon.New(k, m)
	if err != nil {
		t.Fatal(err)
	}
	shards, err := enc.Split(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(shards); err != nil {
		t.Fatal(err)
	}
	g := &rebuildRig{shards: shards, chunk: &stratapb.Chunk{Id: 42, Size: size, ShardSize: uint32(len(shards[0])),
		DataShards: k, ParityShards: m, Crc32C: crcOf(data)}}
	for i := range k + m + 1 {
		s, c := startServer(t, testConfig(t, 1))
		g.servers, g.clients = append(g.servers, s), append(g.clients, c)
		if i < k+m {
			g.chunk.Servers = append(g.chunk.Servers, uint32(i+1))
			writeShard(t, c, Key{ChunkID: 42, Index: uint32(i)}, shards[i])
		}
	}
	// The leader's rebuild capability, as the repair scheduler sends it.
	cc, err := grpc.NewClient(g.servers[k+m].Addr(), metaconn.DialOptions(grpc.WithChainUnaryInterceptor(capsFor(testCapKey)))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	g.repair = stratapb.NewRepairClient(cc)
	return g
}

// sources maps the servers of the stripe, except the one of shard lost, to
// their addresses; addr overrides some.
func (g *rebuildRig) sources(lost int, addr map[int]string) map[uint32]string {
	out := map[uint32]string{}
	for i := range g.chunk.Servers {
		if i == lost {
			continue
		}
		out[uint32(i+1)] = g.servers[i].Addr()
		if a, ok := addr[i]; ok {
			out[uint32(i+1)] = a
		}
	}
	return out
}

// rebuilt reads the rebuilt shard back from the seventh server.
func (g *rebuildRig) rebuilt(t *testing.T, index int) []byte {
	t.Helper()
	resp, err := g.clients[len(g.clients)-1].ReadShard(context.Background(), &stratapb.ReadShardRequest{Key: pbKey(Key{ChunkID: 42, Index: uint32(index)})}, grpc.MaxCallRecvMsgSize(metaconn.MaxMsgSize))
	if err != nil {
		t.Fatalf("read rebuilt shard %d: %v", index, err)
	}
	return resp.Data
}

// TestRebuildAvoidsWrongSource: a source shard that is wrong but
// self-consistent (its block CRCs hold) makes the first decode fail the
// chunk CRC; the rebuild must then try the other sources, store the right
// shard and name the wrong one, for every position of the wrong shard.
// Before, it failed with DataLoss and the scheduler retried the same
// sources for ever.
func TestRebuildAvoidsWrongSource(t *testing.T) {
	g := newRebuildRig(t)
	ctx := context.Background()
	for _, tc := range []struct{ lost, wrong int }{{0, 1}, {0, 4}, {5, 2}, {3, 0}} {
		wrongKey := Key{ChunkID: 42, Index: uint32(tc.wrong)}
		bad := bytes.Clone(g.shards[tc.wrong])
		bad[len(bad)/2] ^= 0x5a
		writeShard(t, g.clients[tc.wrong], wrongKey, bad) // valid block CRCs, wrong content
		_, err := g.repair.RebuildShard(ctx, &stratapb.RebuildShardRequest{Chunk: g.chunk, Index: uint32(tc.lost), Sources: g.sources(tc.lost, nil)})
		if err != nil {
			t.Fatalf("lost %d, wrong %d: rebuild: %v", tc.lost, tc.wrong, err)
		}
		if got := g.rebuilt(t, tc.lost); !bytes.Equal(got, g.shards[tc.lost]) {
			t.Fatalf("lost %d, wrong %d: rebuilt shard differs from the original", tc.lost, tc.wrong)
		}
		writeShard(t, g.clients[tc.wrong], wrongKey, g.shards[tc.wrong])
	}
}

// TestRebuildErrors: too few readable sources is Unavailable (try again
// later); sources that disagree whatever the subset are DataLoss; an
// unreachable source is replaced by another one.
func TestRebuildErrors(t *testing.T) {
	g := newRebuildRig(t)
	ctx := context.Background()
	dead := "127.0.0.1:1"
	req := &stratapb.RebuildShardRequest{Chunk: g.chunk, Index: 0, Sources: g.sources(0, map[int]string{1: dead})}
	if _, err := g.repair.RebuildShard(ctx, req); err != nil {
		t.Fatalf("one source unreachable: %v", err)
	}
	if got := g.rebuilt(t, 0); !bytes.Equal(got, g.shards[0]) {
		t.Fatal("rebuilt shard differs from the original")
	}
	req.Sources = g.sources(0, map[int]string{1: dead, 2: dead})
	_, err := g.repair.RebuildShard(ctx, req)
	wantCode(t, "two sources unreachable", err, codes.Unavailable)
	for _, i := range []int{1, 2} {
		bad := bytes.Clone(g.shards[i])
		bad[0] ^= 1
		writeShard(t, g.clients[i], Key{ChunkID: 42, Index: uint32(i)}, bad)
	}
	req.Sources = g.sources(0, nil)
	_, err = g.repair.RebuildShard(ctx, req)
	wantCode(t, "two wrong sources", err, codes.DataLoss)
}

// BenchmarkRebuildShard rebuilds one shard (1 MiB, 4+2) per op over real
// gRPC on loopback, alternating a missing data shard and a missing parity
// shard. Besides wall time it reports the process CPU time per rebuilt MB
// (user+system, every server included), which a shared machine disturbs
// far less than wall time.
func BenchmarkRebuildShard(b *testing.B) {
	g := newRebuildRig(b)
	ctx := context.Background()
	var ru0, ru1 syscall.Rusage
	b.SetBytes(int64(g.chunk.ShardSize))
	b.ResetTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for i := range b.N {
		lost := []int{0, 5}[i%2]
		req := &stratapb.RebuildShardRequest{Chunk: g.chunk, Index: uint32(lost), Sources: g.sources(lost, nil)}
		if _, err := g.repair.RebuildShard(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Milliseconds())/(float64(b.N)*float64(g.chunk.ShardSize)/1e6), "cpu-ms/MB")
}

// TestForegroundExcludesRepair: client shard reads count as client load
// for the heartbeat; the reads a rebuild makes of its sources do not
// (otherwise repair would make the scheduler yield to itself).
func TestForegroundExcludesRepair(t *testing.T) {
	g := newRebuildRig(t)
	ctx := context.Background()
	for _, s := range g.servers {
		s.metrics.heal.fg.bytes.Store(0) // the rig's shard writes were client load
	}
	req := &stratapb.RebuildShardRequest{Chunk: g.chunk, Index: 0, Sources: g.sources(0, nil)}
	if _, err := g.repair.RebuildShard(ctx, req); err != nil {
		t.Fatal(err)
	}
	for i, s := range g.servers {
		if n := s.metrics.heal.fg.bytes.Load(); n != 0 {
			t.Fatalf("server %d counted %d bytes of repair reads as client load", i, n)
		}
	}
	if _, err := g.clients[1].ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(Key{ChunkID: 42, Index: 1})}, grpc.MaxCallRecvMsgSize(metaconn.MaxMsgSize)); err != nil {
		t.Fatal(err)
	}
	if n, want := g.servers[1].metrics.heal.fg.bytes.Load(), uint64(len(g.shards[1])); n != want {
		t.Fatalf("client read counted as %d bytes of client load, want %d", n, want)
	}
	fg := &g.servers[1].metrics.heal.fg
	fg.rate(time.Now().Add(-time.Second)) // the baseline: everything counted so far
	fg.bytes.Add(4 << 20)
	if r := fg.rate(time.Now()); r < 2<<20 || r > 5<<20 {
		t.Fatalf("rate after 4 MiB in about a second: %d bytes/s", r)
	}
}
