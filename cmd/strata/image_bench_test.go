package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// benchTree returns STRATA_BENCH_TREE, or writes a synthetic ~1 GiB tree:
// files alternate between 4-64 KiB and 1-8 MiB (about 450 files of each),
// incompressible and distinct, in 64 directories.
func benchTree(b *testing.B) string {
	if p := os.Getenv("STRATA_BENCH_TREE"); p != "" {
		return p
	}
	root := filepath.Join(b.TempDir(), "tree")
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var total int64
	for i := 0; total < 1<<30; i++ {
		size := 4<<10 + rng.IntN(60<<10)
		if i%2 == 1 {
			size = 1<<20 + rng.IntN(7<<20)
		}
		copy(buf, fmt.Sprintf("file %d", i)) // distinct content per file
		p := filepath.Join(root, fmt.Sprintf("d%02d/f%05d", i%64, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, buf[:size], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(size)
	}
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func treeBytes(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// BenchmarkImageImport: `strata image import` of a ~1 GiB tree into a
// 3+6 in-process cluster: from the directory (all data new), from the
// directory again under a new tag (chunk dedup: no data written, every
// file's metadata), from a tarball of it (chunk dedup again), and from
// the same tarball again (same digest: the tree is cloned).
func BenchmarkImageImport(b *testing.B) {
	tree := benchTree(b)
	size := treeBytes(tree)
	tarball := filepath.Join(b.TempDir(), "tree.tar")
	if out, err := exec.Command("tar", "-C", tree, "-cf", tarball, ".").CombinedOutput(); err != nil {
		b.Fatalf("tar: %v: %s", err, out)
	}
	c := testcluster.New(b, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	b.Setenv("STRATA_LOG_LEVEL", "error")
	for n := 0; n < b.N; n++ {
		for _, step := range []struct{ tag, src string }{{"dir-first", tree}, {"dir-again", tree}, {"tar-dedup", tarball}, {"tar-same-digest", tarball}} {
			start := time.Now()
			args := []string{"image", "import", "--meta", meta, "--workers", envOr("STRATA_BENCH_WORKERS", "0"), fmt.Sprintf("bench%d:%s", n, step.tag), step.src}
			if code := run(context.Background(), args, io.Discard, os.Stderr); code != 0 {
				b.Fatalf("import: exit %d", code)
			}
			b.ReportMetric(float64(size)/time.Since(start).Seconds()/1e6, step.tag+"-MB/s")
		}
	}
}

// bootDirs are the directories of the boot read set (merged /usr: /bin
// and /lib are symlinks into usr/).
var bootDirs = []string{"usr/bin", "usr/sbin", "usr/lib", "etc"}

// readAll reads every regular file below the boot directories of root and
// returns the bytes read.
func readAll(b *testing.B, root string) int64 {
	var n int64
	buf := make([]byte, 1<<20)
	for _, d := range bootDirs {
		filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			for {
				k, err := f.Read(buf)
				n += int64(k)
				if err != nil {
					break
				}
			}
			f.Close()
			return nil
		})
	}
	return n
}

// BenchmarkImageBootRead: read every file under /usr/bin, /usr/sbin,
// /usr/lib and /etc of an image (STRATA_BENCH_ROOTFS, e.g. a debootstrap
// tree) through an image mount, cold (fresh mount, empty chunk cache) and
// warm (again), against the same tree through go-fuse's loopback.
func BenchmarkImageBootRead(b *testing.B) {
	rootfs := os.Getenv("STRATA_BENCH_ROOTFS")
	if rootfs == "" {
		b.Skip("set STRATA_BENCH_ROOTFS to a root file system (e.g. from debootstrap)")
	}
	c := testcluster.New(b, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	b.Setenv("STRATA_LOG_LEVEL", "error")
	if code := run(context.Background(), []string{"image", "import", "--meta", meta, "boot:1", rootfs}, io.Discard, os.Stderr); code != 0 {
		b.Fatalf("import: exit %d", code)
	}
	for n := 0; n < b.N; n++ {
		lb := loopbackMount(b, rootfs)
		t0 := time.Now()
		bytes := readAll(b, lb)
		loopCold := time.Since(t0)
		t0 = time.Now()
		readAll(b, lb)
		loopWarm := time.Since(t0)

		mp, stop := startImageMountB(b, meta, "boot:1")
		t0 = time.Now()
		got := readAll(b, mp)
		cold := time.Since(t0)
		t0 = time.Now()
		readAll(b, mp)
		warm := time.Since(t0)
		stop()
		if got != bytes {
			b.Fatalf("image mount read %d bytes, loopback %d", got, bytes)
		}
		b.ReportMetric(float64(bytes)/1e6, "MB")
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(warm.Seconds(), "warm-s")
		b.ReportMetric(loopCold.Seconds(), "loopback-cold-s")
		b.ReportMetric(loopWarm.Seconds(), "loopback-warm-s")
		b.ReportMetric(cold.Seconds()/loopCold.Seconds(), "cold-ratio")
		b.ReportMetric(warm.Seconds()/loopWarm.Seconds(), "warm-ratio")
	}
}

// loopbackMount mounts dir through go-fuse's loopback file system.
func loopbackMount(b *testing.B, dir string) string {
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	mp := b.TempDir()
	srv, err := gofs.Mount(mp, root, &gofs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Unmount() })
	return mp
}

// startImageMountB is startImageMount for benchmarks, with a fresh
// overlay directory and chunk cache.
func startImageMountB(b *testing.B, meta, image string) (string, func()) {
	mp := b.TempDir()
	overlay := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"mount", "--meta", meta, "--cache-dir", b.TempDir(), "--image", image, "--overlay", overlay, mp}, io.Discard, os.Stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !isStrataMount(mp) {
		if time.Now().After(deadline) {
			cancel()
			b.Fatal("image mount did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop := func() {
		cancel()
		<-exited
	}
	b.Cleanup(func() {
		if isStrataMount(mp) {
			stop()
		}
	})
	return mp, stop
}

// BenchmarkUpperLayerIO: write (with fsync) and read back a 512 MiB file
// in the upper layer of an image mount, in a plain local directory, and
// in kernel overlayfs over a local lower directory, on the same disk.
func BenchmarkUpperLayerIO(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	b.Setenv("STRATA_LOG_LEVEL", "error")
	lower := b.TempDir()
	os.WriteFile(filepath.Join(lower, "x"), []byte("x"), 0o644)
	if code := run(context.Background(), []string{"image", "import", "--meta", meta, "upper:1", lower}, io.Discard, os.Stderr); code != 0 {
		b.Fatalf("import: exit %d", code)
	}
	mp, stop := startImageMountB(b, meta, "upper:1")
	defer stop()
	plain := b.TempDir()
	ovl := plainOverlayB(b, lower)
	for n := 0; n < b.N; n++ {
		for _, tc := range []struct{ name, dir string }{{"local", plain}, {"overlayfs", ovl}, {"strata-image", mp}} {
			w, r := fileIO(b, filepath.Join(tc.dir, fmt.Sprintf("big%d", n)), 512<<20)
			b.ReportMetric(w, tc.name+"-write-MB/s")
			b.ReportMetric(r, tc.name+"-read-MB/s")
		}
	}
}

func plainOverlayB(b *testing.B, lower string) string {
	d := b.TempDir()
	os.Mkdir(filepath.Join(d, "u"), 0o755)
	os.Mkdir(filepath.Join(d, "w"), 0o755)
	mp := b.TempDir()
	if err := unix.Mount("overlay", mp, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s/u,workdir=%s/w", lower, d, d)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Unmount(mp, unix.MNT_DETACH) })
	return mp
}

// fileIO writes size bytes to p in 1 MiB writes and fsyncs, drops the
// file's cached pages, reads it back, and returns both rates in MB/s.
func fileIO(b *testing.B, p string, size int) (float64, float64) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	t0 := time.Now()
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for done := 0; done < size; done += len(buf) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	w := float64(size) / time.Since(t0).Seconds() / 1e6
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	f.Close()
	t0 = time.Now()
	f, err = os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	io.CopyBuffer(io.Discard, f, buf)
	f.Close()
	r := float64(size) / time.Since(t0).Seconds() / 1e6
	os.Remove(p)
	return w, r
}
