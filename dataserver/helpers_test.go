package dataserver

import (
	"context"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testLogger logs through the test, so that output shows up only for
// failing tests (or with -v).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// openTestStore opens a store on n fresh dirs with fsync off (the tests
// that care about fsync turn it on).
func openTestStore(t testing.TB, n int, tweak func(*StoreOptions)) *Store {
	t.Helper()
	opts := StoreOptions{Logger: testLogger(t)}
	for i := range n {
		opts.Dirs = append(opts.Dirs, filepath.Join(t.TempDir(), "d"+string(rune('0'+i))))
	}
	if tweak != nil {
		tweak(&opts)
	}
	s, err := OpenStore(context.Background(), opts)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustPut(t testing.TB, s *Store, k Key, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, data, crcOf(data)); err != nil {
		t.Fatalf("Put(%v, %d bytes): %v", k, len(data), err)
	}
}

// filesUnder lists the regular files below dir whose names contain sub.
func filesUnder(t testing.TB, dir, sub string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.Contains(d.Name(), sub) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// flipByte inverts one byte of a file in place.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// fakeSpace is a statfs stand-in with a settable free space per dir.
type fakeSpace struct {
	mu   sync.Mutex
	free map[string]uint64
}

func (f *fakeSpace) set(dir string, free uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.free == nil {
		f.free = make(map[string]uint64)
	}
	f.free[dir] = free
}

func (f *fakeSpace) statfs(dir string) (diskSpace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return diskSpace{total: 1 << 40, free: f.free[dir]}, nil
}
