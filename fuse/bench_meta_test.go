package fuse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// metaBenchFiles is the directory size of BenchmarkMeta20k: 20,000, or
// STRATA_BENCH_FILES for a quick run.
func metaBenchFiles(b *testing.B) int {
	if s := os.Getenv("STRATA_BENCH_FILES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("STRATA_BENCH_FILES=%q", s)
		}
		return n
	}
	return 20000
}

// metaBenchWorkers is how many goroutines each phase uses: 8, or
// STRATA_BENCH_WORKERS. (Creates and unlinks in one directory are
// serialised by the kernel's lock on the directory whatever this is;
// stats run in parallel.)
func metaBenchWorkers(b *testing.B) int {
	if s := os.Getenv("STRATA_BENCH_WORKERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("STRATA_BENCH_WORKERS=%q", s)
		}
		return n
	}
	return 8
}

// BenchmarkMeta20k is the metadata loop of issue 3 through the mount: in
// one directory, create 20,000 empty files (open O_CREAT|O_EXCL, close),
// stat each (lstat, on a fresh mount so the kernel has cached nothing),
// unlink each. On Strata (3 voters, one client, then two clients at once
// on two mounts, each doing half of the files in the same directory) and
// on go-fuse's loopback over a local directory.
//
//	go test ./fuse -run '^$' -bench Meta20k -benchtime 1x
func BenchmarkMeta20k(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("FUSE benchmarks run as root")
	}
	files, workers := metaBenchFiles(b), metaBenchWorkers(b)
	c := newClusterTB(b)
	b.Run("strata/1client", func(b *testing.B) {
		mount := func() string { mp, _ := mountCached(b, c, "", 0); return mp }
		metaPhases(b, []func() string{mount}, "one", files, workers)
	})
	b.Run("strata/2clients", func(b *testing.B) {
		mount := func() string { mp, _ := mountCached(b, c, "", 0); return mp }
		metaPhases(b, []func() string{mount, mount}, "two", files, workers)
	})
	b.Run("strata/client-serial", func(b *testing.B) { clientSerial(b, c, min(files, 2000)) })
	backing := b.TempDir()
	b.Run("loopback", func(b *testing.B) {
		mount := func() string { return mountLoopback(b, backing, false) }
		metaPhases(b, []func() string{mount}, "lb", files, workers)
	})
}

// metaPhases runs the three phases with one mount per element of mounts
// (each makes a fresh mount of the same file system), the files split
// between them, and reports each phase's total rate.
func metaPhases(b *testing.B, mounts []func() string, dir string, files, workers int) {
	b.Helper()
	first := mounts[0]()
	if err := os.Mkdir(filepath.Join(first, dir), 0o755); err != nil {
		b.Fatal(err)
	}
	fresh := func() []string {
		mps := make([]string, len(mounts))
		for i, m := range mounts {
			mps[i] = m()
		}
		return mps
	}
	name := func(client, i int) string { return fmt.Sprintf("c%d-f%06d", client, i) }
	phase := func(mps []string, what string, op func(p string) error) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(mps)*workers)
		per := files / len(mps)
		for ci, mp := range mps {
			for w := range workers {
				wg.Go(func() {
					for i := w; i < per; i += workers {
						if err := op(filepath.Join(mp, dir, name(ci, i))); err != nil {
							errs <- fmt.Errorf("%s: %w", what, err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.ReportMetric(float64(per*len(mps))/el.Seconds(), what+"/s")
		b.Logf("%s: %d in %v (%.0f µs each, %d workers per mount, %d mounts)",
			what, per*len(mps), el, el.Seconds()*1e6/float64(per*len(mps)), workers, len(mps))
	}
	for range b.N {
		mps := fresh()
		phase(mps, "creates", func(p string) error {
			fd, err := syscall.Open(p, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return syscall.Close(fd)
		})
		mps = fresh()
		phase(mps, "stats", func(p string) error {
			var st syscall.Stat_t
			return syscall.Lstat(p, &st)
		})
		phase(mps, "unlinks", func(p string) error { return syscall.Unlink(p) })
	}
}

// clientSerial measures one metadata call at a time through the client
// library, without FUSE: the latency that bounds creates and unlinks in
// one directory (the kernel sends them one at a time).
func clientSerial(b *testing.B, c *testcluster.Cluster, files int) {
	ctx := context.Background()
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	dir, err := cl.MkdirAt(ctx, rootIno, "serial", 0o755, client.Owner{})
	if err != nil {
		b.Fatal(err)
	}
	timed := func(what string, op func(i int) error) {
		start := time.Now()
		for i := range files {
			if err := op(i); err != nil {
				b.Fatalf("%s %d: %v", what, i, err)
			}
		}
		el := time.Since(start)
		b.ReportMetric(el.Seconds()*1e6/float64(files), "µs/"+what)
	}
	inos := make([]uint64, files)
	timed("create", func(i int) error {
		a, _, err := cl.CreateAt(ctx, dir.GetIno(), fmt.Sprint(i), 0o644, client.Owner{}, client.CreateOptions{Exclusive: true})
		inos[i] = a.GetIno()
		return err
	})
	timed("getattr", func(i int) error { _, err := cl.GetAttr(ctx, inos[i]); return err })
	timed("unlink", func(i int) error { return cl.UnlinkAt(ctx, dir.GetIno(), fmt.Sprint(i)) })
}
