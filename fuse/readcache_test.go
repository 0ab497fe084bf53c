package fuse

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// mountCached mounts a new client of c whose chunk cache is cacheDir
// ("" for none), unmounted when the test ends. It returns the mount
// point and the FS, for tests that unmount early.
func mountCached(t testing.TB, c *testcluster.Cluster, cacheDir string, cacheBytes int64) (string, *FS) {
	t.Helper()
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: testLogger(),
		ShardTimeout: 5 * time.Second, CacheDir: cacheDir, CacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	mp := mountDirTB(t)
	o := DefaultOptions()
	o.Logger = testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fsys, err := Mount(ctx, cl, mp, o)
	if err == nil {
		ourMounts.Store(fsys.Mountpoint(), true)
	}
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { unmountTB(t, fsys) })
	return mp, fsys
}

// mountDirTB is mountDir for benchmarks too.
func mountDirTB(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-fuse-")
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return mp
}

// unmountTB unmounts unless already done (a test may unmount early).
func unmountTB(t testing.TB, fsys *FS) {
	if mounted, err := isMountpoint(fsys.Mountpoint()); err == nil && !mounted {
		return
	}
	for try := 0; try < 50; try++ {
		if fsys.Unmount() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("unmount %s failed; the TestMain check detaches it", fsys.Mountpoint())
}

// readSeq reads the file at p front to back with 1 MiB reads, as dd does.
func readSeq(t testing.TB, p string, buf []byte, sink io.Writer) int64 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	for {
		n, err := f.Read(buf)
		total += int64(n)
		if sink != nil {
			sink.Write(buf[:n])
		}
		if err == io.EOF {
			return total
		}
		if err != nil {
			t.Fatalf("read %s at %d: %v", p, total, err)
		}
	}
}

func putFile(t testing.TB, c *testcluster.Cluster, name string, data []byte) {
	t.Helper()
	cl := newClientTB(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cl.Put(ctx, "/"+name, bytes.NewReader(data), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func newClientTB(t testing.TB, c *testcluster.Cluster) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func randData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed*31+7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestReadCacheServesWithoutDataservers reads a file cold through a mount
// with a chunk cache, kills every dataserver, and reads it again through
// a second mount sharing the cache directory (a fresh kernel page cache,
// a fresh client index): only the cache can serve it.
func TestReadCacheServesWithoutDataservers(t *testing.T) {
	c := newCluster(t, nil)
	data := randData(3*(4<<20)+12345, 1) // 4 chunks, the last partial
	putFile(t, c, "f", data)
	cacheDir := t.TempDir()

	mp, fsys := mountCached(t, c, cacheDir, 0)
	var cold bytes.Buffer
	readSeq(t, filepath.Join(mp, "f"), make([]byte, 1<<20), &cold)
	if !bytes.Equal(cold.Bytes(), data) {
		t.Fatal("cold read: wrong bytes")
	}
	unmountTB(t, fsys)

	for i := range c.Data {
		c.KillData(i)
	}
	mp2, _ := mountCached(t, c, cacheDir, 0)
	p := filepath.Join(mp2, "f")
	var warm bytes.Buffer
	readSeq(t, p, make([]byte, 1<<20), &warm)
	if !bytes.Equal(warm.Bytes(), data) {
		t.Fatal("warm read with every dataserver down: wrong bytes")
	}
	// Random reads (not readahead) come from the cache too.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) // past the page cache
	buf := make([]byte, 5000)
	for _, off := range []int64{9 << 20, 100, 4<<20 - 10, int64(len(data)) - 5000} {
		if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+5000]) {
			t.Fatalf("warm random read at %d: %v", off, err)
		}
	}
}

// TestReadaheadSequential reads multi-chunk files front to back in 1 MiB
// and odd-sized reads; the readahead window must return the same bytes
// as the file holds, also across a write through another handle.
func TestReadaheadSequential(t *testing.T) {
	c := newCluster(t, smallChunks()) // 64 KiB chunks: many per read
	mp, _ := mountCached(t, c, "", 0)
	data := randData(5<<20+777, 2)
	p := filepath.Join(mp, "seq")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bs := range []int{1 << 20, 4096, 100_000} {
		var got bytes.Buffer
		f, _ := os.Open(p)
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		readSeq(t, p, make([]byte, bs), &got)
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("sequential read in %d-byte reads: wrong bytes", bs)
		}
	}
	t.Run("WriteInvalidatesWindow", func(t *testing.T) { readaheadSeesWrite(t, p, data) })
}

// readaheadSeesWrite: handle A reads sequentially (so chunks ahead are
// prefetched), handle B overwrites bytes A has not read yet and closes,
// and A, past the kernel's page cache, must read the new bytes.
func readaheadSeesWrite(t *testing.T, p string, data []byte) {
	a, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	buf := make([]byte, 256<<10)
	for range 4 {
		if _, err := io.ReadFull(a, buf); err != nil {
			t.Fatal(err)
		}
	}
	at := int64(1<<20 + 1000) // ahead of A, inside its window
	patch := bytes.Repeat([]byte{0xAB}, 3000)
	if err := writeAt(p, patch, at); err != nil {
		t.Fatal(err)
	}
	unix.Fadvise(int(a.Fd()), 0, 0, unix.FADV_DONTNEED)
	want := append([]byte(nil), data...)
	copy(want[at:], patch)
	got, err := io.ReadAll(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[1<<20:]) {
		t.Fatal("read after a write through another handle returned stale bytes")
	}
}

func writeAt(p string, b []byte, off int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
