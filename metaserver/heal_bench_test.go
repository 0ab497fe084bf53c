package metaserver_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
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
	c, err := client.New(client.Config{MetaAddrs: cl.MetaAddrs(), TLS: cl.ClientTLS()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &healEnv{t: b, cl: cl, c: c, files: map[string][]byte{}, lazy: map[string][2]uint64{}}
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

// BenchmarkRepairThroughput: 4+2 on 8 dataservers with 768 MiB of files
// (4 MiB chunks); one dataserver is killed; once it is declared lost, the
// time from the first rebuilt shard to an empty queue gives the repair rate
// (MB/s of rebuilt shard data) at the default limit. One client reads the
// files in a loop throughout; the reads that fall inside the repair window
// give its throughput under repair, compared with an unloaded pass.
func BenchmarkRepairThroughput(b *testing.B) {
	for range b.N {
		e := newBenchEnv(b, testcluster.Options{Data: 8, RepairDelay: time.Second})
		noRebalance := 0.99
		if _, err := e.c.SetRepairConfig(hctx(b), client.RepairSettings{BalanceMargin: &noRebalance}); err != nil {
			b.Fatal(err)
		}
		var paths []string
		for i := 0; i < 24; i++ {
			p := fmt.Sprintf("/b%02d", i)
			if _, err := e.c.Put(hctx(b), p, bytes.NewReader(randData(32<<20, uint64(i))), client.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, p)
		}
		unloaded := readAll(b, e, paths)
		type sample struct {
			from, to time.Time
			n        int64
		}
		var stop atomic.Bool
		var samples []sample
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; !stop.Load(); i++ {
				t0 := time.Now()
				n, err := e.c.Get(hctx(b), paths[i%len(paths)], io.Discard)
				if err != nil {
					b.Error(err)
					return
				}
				samples = append(samples, sample{t0, time.Now(), n})
			}
		}()
		for _, p := range paths {
			e.lazy[p] = [2]uint64{} // lets e.chunks list them
		}
		victim := e.dataID(0)
		var toRebuild uint64 // bytes of the shards the victim holds
		for _, ch := range e.chunks() {
			for _, id := range ch.Servers {
				if id == victim {
					toRebuild += uint64(ch.ShardSize)
				}
			}
		}
		stopProfile := repairProfile(b)
		killed := time.Now()
		e.cl.KillData(0)
		first, last := waitRepair(b, e, victim)
		stopProfile()
		stop.Store(true)
		<-done
		var n int64
		var busy time.Duration
		for _, s := range samples {
			if s.from.After(first) && s.to.Before(last) {
				n += s.n
				busy += s.to.Sub(s.from)
			}
		}
		b.Logf("repair started %v after the kill and took %v for %d bytes", first.Sub(killed).Round(time.Millisecond), last.Sub(first).Round(time.Millisecond), toRebuild)
		b.ReportMetric(float64(toRebuild)/last.Sub(first).Seconds()/1e6, "repair-MB/s")
		b.ReportMetric(float64(toRebuild)/1e6, "rebuilt-MB")
		b.ReportMetric(unloaded/1e6, "read-unloaded-MB/s")
		if busy > 0 {
			b.ReportMetric(float64(n)/busy.Seconds()/1e6, "read-during-repair-MB/s")
		}
	}
}

// waitRepair waits for the repair of the victim's shards: first is when
// the leader first reports a rebuild in flight or done, last when every
// stripe again has six shards on live servers. Both come from whichever
// server leads at the time, so a leader change (the machine is loaded)
// does not end the wait early or lose the count.
func waitRepair(b *testing.B, e *healEnv, victim uint32) (first, last time.Time) {
	var repaired uint64
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		st, err := e.c.RepairStatus(hctx(b))
		if err != nil {
			continue // an election: ask again
		}
		if first.IsZero() && (st.InFlight > 0 || repaired != 0 && st.RepairedShards != repaired) {
			first = time.Now()
		}
		repaired = max(repaired, st.RepairedShards)
		if first.IsZero() || st.InFlight > 0 || st.QueueShards > 0 || st.HealthyStripes == 0 || st.DegradedStripes > 0 {
			continue
		}
		if ok, _ := e.stripesOK(map[uint32]bool{victim: true}, 6); ok {
			return first, time.Now()
		}
	}
	b.Fatal("repair did not finish within 5 minutes")
	return
}

// repairProfile writes a CPU profile of the repair window alone (the
// writes before it would drown it) when STRATA_HEAL_CPUPROFILE names a
// file; it returns the function that stops it.
func repairProfile(b *testing.B) func() {
	path := os.Getenv("STRATA_HEAL_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
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
