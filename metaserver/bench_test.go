package metaserver_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// parallelOps runs n operations over `workers` goroutines (a pipelining
// client: many requests in flight on one connection) and reports ops/s.
func parallelOps(b *testing.B, n, workers int, op func(i int) error) {
	b.Helper()
	b.ReportMetric(testcluster.Parallel(b, n, workers, op), "ops/s")
}

func benchCluster(b *testing.B) (*testcluster.Cluster, stratapb.MetaClient, *metaconn.Conn) {
	c := testcluster.New(b, testcluster.Options{Meta: 3})
	mc, err := metaconn.New([]string{c.Meta[c.WaitLeader()].Srv.GRPCAddr()}, metaconn.Options{DialOptions: metaDial(c)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mc.Close() })
	var direct stratapb.MetaClient
	mc.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
		direct = m
		return nil
	})
	return c, direct, mc
}

// BenchmarkCreate: file creates from one client against 3 voters on
// loopback, 64 requests in flight (raft batches them into shared appends).
func BenchmarkCreate(b *testing.B) {
	_, _, mc := benchCluster(b)
	const n = 20000
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		dir := fmt.Sprintf("d%d", it)
		var parent uint64
		mc.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
			r, err := m.Mkdir(ctx, &stratapb.MkdirRequest{Parent: 1, Name: dir, Mode: 0o755})
			if err == nil {
				parent = r.Attr.Ino
			}
			return err
		})
		parallelOps(b, n, 256, func(i int) error {
			hdr := &stratapb.RequestHeader{ClientId: "bench", RequestId: uint64(it*n + i + 1)}
			return mc.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
				_, err := m.Create(ctx, &stratapb.CreateRequest{Header: hdr, Parent: parent, Name: fmt.Sprintf("f%d", i), Mode: 0o644})
				return err
			})
		})
	}
}

// BenchmarkGetAttr: linearizable getattrs (each confirmed by a leader
// check shared with the other reads in flight) from one client.
func BenchmarkGetAttr(b *testing.B) {
	_, m, _ := benchCluster(b)
	for i := 0; i < 100; i++ {
		if _, err := m.Create(context.Background(), &stratapb.CreateRequest{Parent: 1, Name: fmt.Sprintf("f%d", i), Mode: 0o644}); err != nil {
			b.Fatal(err)
		}
	}
	const n = 200000
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		parallelOps(b, n, 128, func(i int) error {
			_, err := m.GetAttr(context.Background(), &stratapb.GetAttrRequest{Ino: uint64(2 + i%100)})
			return err
		})
	}
}

// BenchmarkMemoryPerFile measures the metaserver's heap per file: 1
// million files (one chunk each, 4+2) in 1,000 directories, applied through
// a real single-voter raft, then the heap difference divided by the count.
func BenchmarkMemoryPerFile(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{Meta: 1})
	m := c.Meta[0].Srv
	const dirs, perDir = 1000, 1000
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	if err := m.LoadTestFiles(context.Background(), dirs, perDir); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perFile := float64(after.HeapAlloc-before.HeapAlloc) / float64(dirs*perDir)
	b.ReportMetric(perFile, "heap-bytes/file")
	if st := m.Stats(); st.Inodes < dirs*perDir {
		b.Fatalf("only %d inodes", st.Inodes)
	}
}
