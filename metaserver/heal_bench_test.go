package metaserver_test

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// benchEnv adapts healEnv to a benchmark.
func newBenchEnv(b *testing.B, opts testcluster.Options) *healEnv {
	opts.Heal = true
	if opts.Policy == nil {
		opts.Policy = &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 4 << 20, SmallThreshold: 128 << 10}
	}
	cl := testcluster.New(b, opts)
	c, err := client.New(client.Config{MetaAddrs: cl.MetaAddrs()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &healEnv{cl: cl, c: c, files: map[string][]byte{}, lazy: map[string][2]uint64{}}
}

// readAll reads every file once and returns the bytes per second.
func readAll(b *testing.B, e *healEnv, paths []string) float64 {
	start := time.Now()
	var n int64
	for _, p := range paths {
		m, err := e.c.Get(hctx(b), p, io.Discard)
		if err != nil {
			b.Error(err) // may run on a reader goroutine: no Fatal
			return 0
		}
		n += m
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkRepairThroughput: 4+2 on 8 dataservers with 512 MiB of files;
// one dataserver is killed and the time from the first rebuilt shard to
// the last gives the repair rate (MB/s of rebuilt shard data), while one
// client reads the files in a loop; its throughput is compared with an
// unloaded read of the same files.
func BenchmarkRepairThroughput(b *testing.B) {
	for range b.N {
		e := newBenchEnv(b, testcluster.Options{Data: 8, RepairDelay: time.Second})
		var paths []string
		for i := 0; i < 16; i++ {
			p := fmt.Sprintf("/b%02d", i)
			if _, err := e.c.Put(hctx(b), p, bytes.NewReader(randData(32<<20, uint64(i))), client.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, p)
		}
		unloaded := readAll(b, e, paths)
		var stop atomic.Bool
		var during []float64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for !stop.Load() {
				during = append(during, readAll(b, e, paths))
			}
		}()
		e.cl.KillData(0)
		var st *stratapb.RepairStatusResponse
		var first time.Time
		for {
			var err error
			st, err = e.c.RepairStatus(hctx(b))
			if err != nil {
				b.Fatal(err)
			}
			if st.RepairedShards > 0 && first.IsZero() {
				first = time.Now()
			}
			if st.RepairedShards > 0 && st.QueueShards == 0 && st.DegradedStripes == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(first)
		stop.Store(true)
		<-done
		var avg float64
		for _, d := range during {
			avg += d
		}
		if len(during) > 0 {
			avg /= float64(len(during))
		}
		b.ReportMetric(float64(st.RepairedBytes)/elapsed.Seconds()/1e6, "repair-MB/s")
		b.ReportMetric(unloaded/1e6, "read-unloaded-MB/s")
		b.ReportMetric(avg/1e6, "read-during-repair-MB/s")
		b.ReportMetric(float64(st.RepairedBytes)/1e6, "rebuilt-MB")
	}
}

// BenchmarkScrubCost reads 256 MiB of files with the scrubbers off, then
// with every dataserver scrubbing at the default rate.
func BenchmarkScrubCost(b *testing.B) {
	for _, scrub := range []struct {
		name string
		rate int64
	}{{"off", -1}, {"default", 0}} {
		b.Run(scrub.name, func(b *testing.B) {
			for range b.N {
				e := newBenchEnv(b, testcluster.Options{Data: 8, ScrubRate: scrub.rate, ScrubInterval: time.Millisecond})
				var paths []string
				for i := 0; i < 8; i++ {
					p := fmt.Sprintf("/s%02d", i)
					if _, err := e.c.Put(hctx(b), p, bytes.NewReader(randData(32<<20, uint64(i))), client.PutOptions{}); err != nil {
						b.Fatal(err)
					}
					paths = append(paths, p)
				}
				var best float64
				for r := 0; r < 3; r++ {
					best = max(best, readAll(b, e, paths))
				}
				b.ReportMetric(best/1e6, "read-MB/s")
			}
		})
	}
}
