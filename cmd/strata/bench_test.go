package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// startDev runs the dev cluster (3 metaservers, 6 dataservers, one
// process) in a temp dir on its own ports, as `strata dev` does.
func startDev(b *testing.B, fsync bool, basePort int, insecure bool) *devCluster {
	b.Helper()
	o := devOptions{dir: b.TempDir(), basePort: basePort, metas: 3, datas: 6, fsync: fsync, insecure: insecure}
	dc := &devCluster{o: o, log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry()}
	b.Cleanup(dc.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dc.start(ctx); err != nil {
		b.Fatal(err)
	}
	return dc
}

// BenchmarkDevPutGet1GiB: `strata put` and `strata get` of a 1 GiB file
// (STRATA_BENCH_MIB changes the size) against the dev cluster on
// loopback, through the CLI's own code, with mutual TLS (the default) and
// with --insecure side by side.
func BenchmarkDevPutGet1GiB(b *testing.B) {
	size := int64(1 << 30)
	if mib, err := strconv.Atoi(os.Getenv("STRATA_BENCH_MIB")); err == nil && mib > 0 {
		size = int64(mib) << 20
	}
	src := filepath.Join(b.TempDir(), "src")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	for i, fsync := range benchFsyncModes() {
		for j, tls := range benchTLSModes() {
			b.Run(fmt.Sprintf("fsync=%v/tls=%v", fsync, tls), func(b *testing.B) {
				dc := startDev(b, fsync, 17400+100*i+200*j, !tls)
				meta := strings.Join(dc.metaAddrs(), ",")
				b.Setenv("STRATA_LOG_LEVEL", "error")
				b.Setenv("STRATA_TLS_DIR", devTLSDir(dc.o.dir))
				tlsArg := "--insecure=" + strconv.FormatBool(!tls)
				for n := 0; n < b.N; n++ {
					remote := fmt.Sprintf("/big%d", n)
					start := time.Now()
					if code := run(context.Background(), []string{"put", tlsArg, "--meta", meta, src, remote}, io.Discard, os.Stderr); code != 0 {
						b.Fatalf("put: exit %d", code)
					}
					put := time.Since(start)
					start = time.Now()
					if code := run(context.Background(), []string{"get", tlsArg, "--meta", meta, remote, "-"}, io.Discard, os.Stderr); code != 0 {
						b.Fatalf("get: exit %d", code)
					}
					get := time.Since(start)
					b.ReportMetric(float64(size)/put.Seconds()/1e6, "put-MB/s")
					b.ReportMetric(float64(size)/get.Seconds()/1e6, "get-MB/s")
				}
			})
		}
	}
}

// benchTLSModes: STRATA_BENCH_TLS=on|off limits a run to mutual TLS or to
// plain text; by default both run, side by side.
func benchTLSModes() []bool {
	switch os.Getenv("STRATA_BENCH_TLS") {
	case "on":
		return []bool{true}
	case "off":
		return []bool{false}
	}
	return []bool{true, false}
}

// benchFsyncModes: STRATA_BENCH_FSYNC=on|off limits the run to one mode.
func benchFsyncModes() []bool {
	switch os.Getenv("STRATA_BENCH_FSYNC") {
	case "on":
		return []bool{true}
	case "off":
		return []bool{false}
	}
	return []bool{false, true}
}

// clientOps runs n operations over `inflight` goroutines sharing one
// client and reports operations per second.
func clientOps(b *testing.B, n, inflight int, op func(i int) error) {
	b.Helper()
	b.ReportMetric(testcluster.Parallel(b, n, inflight, op), "ops/s")
}

func benchClient(b *testing.B, tls bool) *client.Client {
	c := testcluster.New(b, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Insecure: !tls})
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	return cl
}

// BenchmarkClientCreate: creates in one directory from one client against
// 3 voters on loopback, with mutual TLS and plain text side by side.
func BenchmarkClientCreate(b *testing.B) {
	for _, tls := range benchTLSModes() {
		b.Run(fmt.Sprintf("tls=%v", tls), func(b *testing.B) { benchCreate(b, tls) })
	}
}

func benchCreate(b *testing.B, tls bool) {
	cl := benchClient(b, tls)
	ctx := context.Background()
	for it := 0; it < b.N; it++ {
		dir, err := cl.Mkdir(ctx, fmt.Sprintf("/d%d", it), 0o755)
		if err != nil {
			b.Fatal(err)
		}
		clientOps(b, 20000, 256, func(i int) error {
			_, err := cl.Create(ctx, dir.Ino, fmt.Sprintf("f%d", i), 0o644)
			return err
		})
	}
}

// BenchmarkClientGetAttr: linearizable getattrs from one client, with
// mutual TLS and plain text side by side.
func BenchmarkClientGetAttr(b *testing.B) {
	for _, tls := range benchTLSModes() {
		b.Run(fmt.Sprintf("tls=%v", tls), func(b *testing.B) { benchGetAttr(b, tls) })
	}
}

func benchGetAttr(b *testing.B, tls bool) {
	cl := benchClient(b, tls)
	ctx := context.Background()
	dir, err := cl.Mkdir(ctx, "/d", 0o755)
	if err != nil {
		b.Fatal(err)
	}
	var inos []uint64
	for i := 0; i < 1000; i++ {
		a, err := cl.Create(ctx, dir.Ino, fmt.Sprintf("f%d", i), 0o644)
		if err != nil {
			b.Fatal(err)
		}
		inos = append(inos, a.Ino)
	}
	for it := 0; it < b.N; it++ {
		clientOps(b, 300000, 256, func(i int) error {
			_, err := cl.GetAttr(ctx, inos[i%len(inos)])
			return err
		})
	}
}

// BenchmarkSmallFiles measures where replicating a chunk (3 copies) stops
// paying off against 4+2 erasure coding: files/s of puts and gets of files
// of each size, both ways, 16 in flight. The default small-file threshold
// (metaserver.DefaultSmallThreshold) comes from this table.
func BenchmarkSmallFiles(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for _, size := range []int{4 << 10, 32 << 10, 128 << 10, 256 << 10, 1 << 20} {
		data := make([]byte, size)
		rand.Read(data)
		for _, scheme := range []string{"replicated", "erasure"} {
			pol := &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 4 << 20}
			if scheme == "replicated" {
				pol.SmallThreshold = 4 << 20
			}
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, scheme), func(b *testing.B) {
				dir := fmt.Sprintf("/small-%d-%s", size, scheme)
				if err := cl.MkdirAll(ctx, dir, 0o755); err != nil {
					b.Fatal(err)
				}
				if err := cl.SetPolicy(ctx, dir, pol); err != nil {
					b.Fatal(err)
				}
				const n = 400
				for it := 0; it < b.N; it++ {
					start := time.Now()
					clientOps(b, n, 16, func(i int) error {
						_, err := cl.Put(ctx, fmt.Sprintf("%s/f%d-%d", dir, it, i), bytes.NewReader(data), client.PutOptions{})
						return err
					})
					b.ReportMetric(float64(n)/time.Since(start).Seconds(), "puts/s")
					start = time.Now()
					clientOps(b, n, 16, func(i int) error {
						_, err := cl.Get(ctx, fmt.Sprintf("%s/f%d-%d", dir, it, i), io.Discard)
						return err
					})
					b.ReportMetric(float64(n)/time.Since(start).Seconds(), "gets/s")
				}
			})
		}
	}
}
