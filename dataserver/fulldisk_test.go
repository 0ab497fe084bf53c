package dataserver

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// mountTmpfs mounts a small tmpfs: a real disk that fills up. It needs root
// (CAP_SYS_ADMIN); where that is missing the test is skipped, and the
// statfs/beforeWrite seams in store_test.go cover the same logic.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount tmpfs (%v); full-disk behaviour is covered by the seam tests", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func TestStoreRealFullDisk(t *testing.T) {
	small := mountTmpfs(t, "1m")
	big := t.TempDir()
	ctx := context.Background()
	s, err := OpenStore(ctx, StoreOptions{Dirs: []string{small, big}, Fsync: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := randBytes(2<<20, 1)

	// Real statfs: the small disk has no room, so the shard goes to big.
	mustPut(t, s, Key{ChunkID: 1}, data)
	if e, _ := s.lookup(Key{ChunkID: 1}); e.dir != 1 {
		t.Fatalf("shard in dir %d, want the big one", e.dir)
	}

	// statfs lies that the small disk is empty: the write hits a real
	// ENOSPC there, its temp file is removed, and the big disk takes it.
	s.statfs = func(dir string) (diskSpace, error) {
		sp, err := statfs(dir)
		if dir == small {
			sp.free = 1 << 40
		}
		return sp, err
	}
	mustPut(t, s, Key{ChunkID: 2}, data)
	if e, _ := s.lookup(Key{ChunkID: 2}); e.dir != 1 {
		t.Fatalf("shard in dir %d after ENOSPC, want the big one", e.dir)
	}
	if tmp := filesUnder(t, small, tempMarker); len(tmp) != 0 {
		t.Fatalf("partial files left on the full disk: %v", tmp)
	}
}

func TestStoreRealFullDiskOnly(t *testing.T) {
	small := mountTmpfs(t, "1m")
	ctx := context.Background()
	s, err := OpenStore(ctx, StoreOptions{Dirs: []string{small}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.statfs = func(string) (diskSpace, error) { return diskSpace{total: 1 << 40, free: 1 << 40}, nil }
	data := randBytes(2<<20, 2)
	err = s.Put(ctx, Key{ChunkID: 3}, data, crcOf(data))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk = %v, want ErrNoSpace wrapping ENOSPC", err)
	}
	if tmp := filesUnder(t, small, tempMarker); len(tmp) != 0 {
		t.Fatalf("partial files left: %v", tmp)
	}
	// A small shard still fits once the big one is gone.
	mustPut(t, s, Key{ChunkID: 4}, []byte("fits"))
	if _, err := os.Stat(s.dirs[0].shardPath(Key{ChunkID: 4})); err != nil {
		t.Fatal(err)
	}
}
