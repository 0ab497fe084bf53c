package fuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestStatAhead checks the statahead of busy directories: after many
// lookups in a directory, the mount lists it once and answers further
// lookups from the listing with the right attributes; a name created
// after the listing is still found; and once anything changed through
// the mount, the listing is no longer used.
func TestStatAhead(t *testing.T) {
	c := newCluster(t, nil)
	writer := mount(t, c, nil)
	const files = 300
	dir := filepath.Join(writer, "d")
	must(t, os.Mkdir(dir, 0o755))
	for i := range files {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), make([]byte, i), 0o640))
	}
	// Long timeouts, so that the listing stays good however slow the
	// machine is; the reader's kernel has cached nothing of d.
	opts := DefaultOptions()
	opts.AttrTimeout, opts.EntryTimeout = time.Minute, time.Minute
	mp, fsys := mountOpts(t, c, opts)
	stat := func(name string) *syscall.Stat_t {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(mp, "d", name), &st); err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		return &st
	}
	for i := range aheadTrigger {
		stat(fmt.Sprint(i))
	}
	dn := dirNode(t, fsys, "d")
	waitFor(t, "the statahead listing", func() bool {
		dn.ahead.mu.Lock()
		defer dn.ahead.mu.Unlock()
		return dn.ahead.entries != nil
	})
	for i := aheadTrigger; i < files-10; i++ {
		st := stat(fmt.Sprint(i))
		if st.Size != int64(i) || st.Mode != syscall.S_IFREG|0o640 {
			t.Fatalf("file %d: size %d mode %o, want %d and %o", i, st.Size, st.Mode, i, syscall.S_IFREG|0o640)
		}
	}
	if hits := fsys.aheadHits.Load(); hits < files-10-aheadTrigger {
		t.Fatalf("%d lookups answered from the listing, want %d", hits, files-10-aheadTrigger)
	}
	must(t, os.WriteFile(filepath.Join(dir, "late"), []byte("x"), 0o644))
	if st := stat("late"); st.Size != 1 {
		t.Fatalf("file created after the listing: size %d, want 1", st.Size)
	}
	// A change through the reader's mount retires the listing.
	must(t, os.WriteFile(filepath.Join(mp, "d", "mine"), []byte("xy"), 0o644))
	before := fsys.aheadHits.Load()
	must(t, os.Truncate(filepath.Join(writer, "d", fmt.Sprint(files-1)), 7))
	if st := stat(fmt.Sprint(files - 1)); st.Size != 7 {
		t.Fatalf("file changed after a change through this mount: size %d, want 7", st.Size)
	}
	if hits := fsys.aheadHits.Load(); hits != before {
		t.Fatalf("listing used after a change through the mount (%d hits, was %d)", hits, before)
	}
}

// TestCapsXattrCache checks the cache of security.capability (read by
// the kernel before every write): a change through the mount shows at
// once, another mount's shows after open, and writes still work.
func TestCapsXattrCache(t *testing.T) {
	c := newCluster(t, nil)
	opts := DefaultOptions()
	opts.AttrTimeout = time.Minute // only invalidation can refresh it
	a, _ := mountOpts(t, c, opts)
	b := mount(t, c, nil)
	pa, pb := filepath.Join(a, "prog"), filepath.Join(b, "prog")
	must(t, os.WriteFile(pa, []byte("v1"), 0o755))
	buf := make([]byte, 64)
	if _, err := syscall.Getxattr(pa, capsXattr, buf); err != syscall.ENODATA {
		t.Fatalf("getxattr of a file without capabilities: %v, want ENODATA", err)
	}
	caps := func(permitted uint32) []byte {
		v := make([]byte, 20) // struct vfs_cap_data, revision 2
		binary.LittleEndian.PutUint32(v, 0x02000000)
		binary.LittleEndian.PutUint32(v[4:], permitted)
		return v
	}
	must(t, syscall.Setxattr(pa, capsXattr, caps(1<<10), 0))
	if n, err := syscall.Getxattr(pa, capsXattr, buf); err != nil || !bytes.Equal(buf[:n], caps(1<<10)) {
		t.Fatalf("after setxattr through the mount: %x, %v", buf[:max(n, 0)], err)
	}
	must(t, syscall.Setxattr(pb, capsXattr, caps(1<<12), 0))
	f, err := os.OpenFile(pa, os.O_RDWR, 0) // open: close-to-open
	must(t, err)
	defer f.Close()
	if n, err := syscall.Getxattr(pa, capsXattr, buf); err != nil || !bytes.Equal(buf[:n], caps(1<<12)) {
		t.Fatalf("after another mount's setxattr and an open: %x, %v", buf[:max(n, 0)], err)
	}
	for range 3 {
		if _, err := f.Write([]byte("more")); err != nil {
			t.Fatal(err)
		}
	}
	must(t, f.Close())
	if got, err := os.ReadFile(pb); err != nil || string(got) != "moremoremore" {
		t.Fatalf("read back %q, %v", got, err)
	}
}

// TestWriteBackOrder overwrites, right away, chunks that a sequential
// writer's background sends may still be writing: the later bytes win.
func TestWriteBackOrder(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	p := filepath.Join(mp, "f")
	want := randData(24<<20, 7)
	f, err := os.Create(p)
	must(t, err)
	for off := 0; off < len(want); off += 1 << 20 {
		if _, err := f.Write(want[off : off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	// Chunks 0-3 went out in the background after the 16th MiB; rewrite
	// parts of them, whole and partial, at once.
	patch := randData(5<<20+333, 8)
	if _, err := f.WriteAt(patch, 1<<20+17); err != nil {
		t.Fatal(err)
	}
	copy(want[1<<20+17:], patch)
	must(t, f.Close())
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v) %s, want %d", len(got), err, firstDiff(got, want), len(want))
	}
}

// mountOpts mounts a new client of c with opts until the test ends.
func mountOpts(t *testing.T, c *testcluster.Cluster, opts Options) (string, *FS) {
	t.Helper()
	cl := newClient(t, c)
	mp := mountDir(t)
	opts.Logger = testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fsys, err := Mount(ctx, cl, mp, opts)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	ourMounts.Store(fsys.Mountpoint(), true)
	t.Cleanup(func() { unmount(t, fsys) })
	return mp, fsys
}

// dirNode is the node of directory name below the root of fsys, as the
// kernel looked it up.
func dirNode(t *testing.T, fsys *FS, name string) *node {
	t.Helper()
	ch := fsys.root.GetChild(name)
	if ch == nil {
		t.Fatalf("the kernel has not looked up %s", name)
	}
	return ch.Operations().(*node)
}

// waitFor polls cond for up to a minute (CI machines are slow).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConcurrentWritersOneFile has several descriptors of one file on
// one mount write disjoint ranges at once (MPI ranks on one node), in
// pieces that straddle chunks, so that background sends, waits for them
// and write-throughs of non-contiguous ranges interleave.
func TestConcurrentWritersOneFile(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	p := filepath.Join(mp, "shared")
	const writers, region, piece = 4, 6<<20 + 4321, 700 << 10
	want := randData(writers*region, 11)
	must(t, os.WriteFile(p, nil, 0o644))
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			// Back to front every other piece, then the rest: ranges that
			// do not continue each other inside a chunk.
			lo, hi := w*region, (w+1)*region
			for pass := range 2 {
				for off := lo + pass*piece; off < hi; off += 2 * piece {
					end := min(off+piece, hi)
					if _, err := f.WriteAt(want[off:end], int64(off)); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- f.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, os.ErrClosed) {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v) %s, want %d", len(got), err, firstDiff(got, want), len(want))
	}
}
