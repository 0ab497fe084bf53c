package dataserver

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
)

func TestStorePlacement(t *testing.T) {
	var fs fakeSpace
	s := openTestStore(t, 2, func(o *StoreOptions) { o.ReserveBytes = 1 << 20 })
	s.statfs = fs.statfs
	a, b := s.dirs[0].path, s.dirs[1].path
	ctx := context.Background()
	data := randBytes(100_000, 1)

	fs.set(a, 10<<20)
	fs.set(b, 20<<20)
	mustPut(t, s, Key{ChunkID: 1}, data)
	if e, _ := s.lookup(Key{ChunkID: 1}); e.dir != 1 {
		t.Fatalf("shard went to dir %d, want the one with most free space (1)", e.dir)
	}

	// b now sits at its reserve: writes must go to a.
	fs.set(b, 1<<20)
	mustPut(t, s, Key{ChunkID: 2}, data)
	if e, _ := s.lookup(Key{ChunkID: 2}); e.dir != 0 {
		t.Fatalf("shard went to dir %d, want the dir above its reserve (0)", e.dir)
	}

	// Rewriting key 1 while b is full moves it to a and drops the old copy.
	mustPut(t, s, Key{ChunkID: 1}, data[:10])
	if e, _ := s.lookup(Key{ChunkID: 1}); e.dir != 0 || len(filesUnder(t, b, Key{ChunkID: 1}.String())) != 0 {
		t.Fatalf("rewrite did not move the shard cleanly: dir %d, files in b %v", e.dir, filesUnder(t, b, ""))
	}

	// Everything full: ErrNoSpace and no partial files.
	fs.set(a, 1<<20)
	if err := s.Put(ctx, Key{ChunkID: 3}, data, crcOf(data)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Put on full disks = %v, want ErrNoSpace", err)
	}
	if tmp := append(filesUnder(t, a, tempMarker), filesUnder(t, b, tempMarker)...); len(tmp) != 0 {
		t.Fatalf("partial files left: %v", tmp)
	}
	if c, err := s.Capacity(ctx); err != nil || c.Writable {
		t.Fatalf("Capacity on full disks = %+v, %v; want not writable", c, err)
	}
}

func TestStoreFailoverOnENOSPC(t *testing.T) {
	var fs fakeSpace
	s := openTestStore(t, 2, nil)
	s.statfs = fs.statfs
	a, b := s.dirs[0].path, s.dirs[1].path
	fs.set(a, 1<<30) // a looks emptiest, so it is tried first...
	fs.set(b, 1<<29)
	var mu sync.Mutex
	full := map[string]bool{a: true} // ...but fails with ENOSPC
	s.beforeWrite = func(dir string) error {
		mu.Lock()
		defer mu.Unlock()
		if full[dir] {
			return syscall.ENOSPC
		}
		return nil
	}
	mustPut(t, s, Key{ChunkID: 1}, randBytes(5000, 1))
	if e, _ := s.lookup(Key{ChunkID: 1}); e.dir != 1 {
		t.Fatalf("shard in dir %d after ENOSPC on dir 0, want 1", e.dir)
	}
	mu.Lock()
	full[b] = true
	mu.Unlock()
	err := s.Put(context.Background(), Key{ChunkID: 2}, []byte("x"), crcOf([]byte("x")))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put with every disk failing ENOSPC = %v, want ErrNoSpace wrapping ENOSPC", err)
	}
	if tmp := append(filesUnder(t, a, tempMarker), filesUnder(t, b, tempMarker)...); len(tmp) != 0 {
		t.Fatalf("partial files left: %v", tmp)
	}
}

func TestStoreFailoverOnDiskFailure(t *testing.T) {
	var fs fakeSpace
	s := openTestStore(t, 2, nil)
	s.statfs = fs.statfs
	fs.set(s.dirs[0].path, 1<<30)
	fs.set(s.dirs[1].path, 1<<29)
	failing := s.dirs[0].path
	s.beforeWrite = func(dir string) error {
		if dir == failing || failing == "all" {
			return syscall.EIO
		}
		return nil
	}
	mustPut(t, s, Key{ChunkID: 1}, []byte("data"))
	if e, _ := s.lookup(Key{ChunkID: 1}); e.dir != 1 {
		t.Fatalf("shard in dir %d after EIO on dir 0, want 1", e.dir)
	}
	failing = "all"
	err := s.Put(context.Background(), Key{ChunkID: 2}, []byte("x"), crcOf([]byte("x")))
	if err == nil || errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Put with every disk failing = %v, want an EIO error that is not ErrNoSpace", err)
	}
}
