package dataserver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const bs = DefaultBlockSize

func TestStoreRoundTrip(t *testing.T) {
	s := openTestStore(t, 1, func(o *StoreOptions) { o.Fsync = true })
	ctx := context.Background()
	for i, n := range []int{0, 1, bs - 1, bs, bs + 1, 1 << 20, 5 << 20} {
		k := Key{ChunkID: uint64(1000 + i), Index: uint32(i)}
		data := randBytes(n, uint64(i))
		mustPut(t, s, k, data)
		got, size, err := s.Read(ctx, k, 0, 0)
		if err != nil {
			t.Fatalf("Read(%v): %v", k, err)
		}
		if size != uint64(n) || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read %d bytes (shard size %d), content equal %v", n, len(got), size, bytes.Equal(got, data))
		}
		info, err := s.Stat(ctx, k)
		if err != nil || info.Size != uint64(n) {
			t.Fatalf("Stat(%v) = %+v, %v; want size %d", k, info, err, n)
		}
	}
	if st := s.Stats(); st.Shards != 7 {
		t.Fatalf("Stats().Shards = %d, want 7", st.Shards)
	}
}

func TestStoreRangeReads(t *testing.T) {
	s := openTestStore(t, 1, nil)
	ctx := context.Background()
	const size = 3*bs + 100
	data := randBytes(size, 7)
	k := Key{ChunkID: 42, Index: 3}
	mustPut(t, s, k, data)
	tests := []struct {
		name        string
		off, length uint64
		wantLen     int // bytes expected; -1: ErrInvalid
	}{
		{"first byte", 0, 1, 1},
		{"whole (length 0)", 0, 0, size},
		{"whole (explicit)", 0, size, size},
		{"last byte of block 0", bs - 1, 1, 1},
		{"straddle blocks 0-1", bs - 1, 2, 2},
		{"first byte of block 1", bs, 1, 1},
		{"exactly block 1", bs, bs, bs},
		{"block 1 plus a byte each side", bs - 1, bs + 2, bs + 2},
		{"into the short last block", 3*bs - 10, 20, 20},
		{"short last block only", 3 * bs, 100, 100},
		{"last byte", size - 1, 1, 1},
		{"to the end from the middle", bs + 17, 0, size - bs - 17},
		{"empty at the end", size, 0, 0},
		{"offset past the end", size + 1, 0, -1},
		{"length past the end", size - 1, 2, -1},
		{"length overflows", 10, ^uint64(0) - 5, -1},
		{"huge offset", ^uint64(0), 1, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, shardSize, err := s.Read(ctx, k, tc.off, tc.length)
			if tc.wantLen < 0 {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Read = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			want := data[tc.off : tc.off+uint64(tc.wantLen)]
			if shardSize != size || !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes (size %d), want %d bytes at %d", len(got), shardSize, len(want), tc.off)
			}
		})
	}
}

func TestStoreEmptyShardReads(t *testing.T) {
	s := openTestStore(t, 1, nil)
	k := Key{ChunkID: 1}
	mustPut(t, s, k, nil)
	if got, size, err := s.Read(context.Background(), k, 0, 0); err != nil || size != 0 || len(got) != 0 {
		t.Fatalf("Read empty = %d bytes, size %d, %v", len(got), size, err)
	}
	if _, _, err := s.Read(context.Background(), k, 0, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Read 1 byte of empty shard: %v, want ErrInvalid", err)
	}
}

// shardFile returns the path of k's file in s.
func shardFile(t testing.TB, s *Store, k Key) string {
	t.Helper()
	e, ok := s.lookup(k)
	if !ok {
		t.Fatalf("%v not indexed", k)
	}
	return s.dirs[e.dir].shardPath(k)
}

func TestStoreCorruptBlock(t *testing.T) {
	s := openTestStore(t, 1, nil)
	ctx := context.Background()
	data := randBytes(4*bs, 3)
	k := Key{ChunkID: 9, Index: 1}
	mustPut(t, s, k, data)
	h := header{blockSize: bs, key: k, dataLen: uint64(len(data))}
	flipByte(t, shardFile(t, s, k), h.dataOffset()+2*bs+7)

	for _, r := range []struct{ off, length uint64 }{{2 * bs, 1}, {2*bs + 7, 1}, {bs, 2 * bs}, {0, 0}, {3*bs - 1, 2}} {
		got, _, err := s.Read(ctx, k, r.off, r.length)
		var ce *CorruptError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Block != 2 || got != nil {
			t.Fatalf("Read(%d, %d) = %d bytes, %v; want ErrCorrupt in block 2", r.off, r.length, len(got), err)
		}
		if !strings.Contains(err.Error(), "block 2") || !strings.Contains(err.Error(), "0000000000000009") {
			t.Fatalf("error %q does not name the chunk and block", err)
		}
	}
	for _, r := range []struct{ off, length uint64 }{{0, 2 * bs}, {3 * bs, bs}, {2*bs - 1, 1}, {3 * bs, 0}} {
		got, _, err := s.Read(ctx, k, r.off, r.length)
		if err != nil || !bytes.Equal(got, data[r.off:r.off+uint64(len(got))]) {
			t.Fatalf("Read(%d, %d) of a healthy block = %v", r.off, r.length, err)
		}
	}
	if n := s.Stats().ChecksumFailures; n != 5 {
		t.Fatalf("ChecksumFailures = %d, want 5", n)
	}
}

func TestStoreCorruptBlockTable(t *testing.T) {
	s := openTestStore(t, 1, nil)
	k := Key{ChunkID: 5}
	mustPut(t, s, k, randBytes(3*bs, 1))
	flipByte(t, shardFile(t, s, k), headerSize+crcSize*1+2) // entry of block 1
	if _, _, err := s.Read(context.Background(), k, bs, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read with a damaged table entry = %v, want ErrCorrupt", err)
	}
	if _, _, err := s.Read(context.Background(), k, 0, bs); err != nil {
		t.Fatalf("Read of block 0 = %v", err)
	}
}

func TestStoreCorruptHeader(t *testing.T) {
	s := openTestStore(t, 1, nil)
	ctx := context.Background()
	for i := range int64(headerSize) {
		k := Key{ChunkID: uint64(100 + i), Index: 2}
		mustPut(t, s, k, randBytes(bs+3, uint64(i)))
		flipByte(t, shardFile(t, s, k), i)
		want := ErrCorrupt
		if i == 4 {
			want = ErrUnsupportedVersion
		}
		if _, _, err := s.Read(ctx, k, 0, 0); !errors.Is(err, want) {
			t.Errorf("header byte %d flipped: Read = %v, want %v", i, err, want)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, want) {
			t.Errorf("header byte %d flipped: Stat = %v, want %v", i, err, want)
		}
	}
}

func TestStoreTruncatedOrGrown(t *testing.T) {
	s := openTestStore(t, 1, nil)
	ctx := context.Background()
	data := randBytes(2*bs, 5)
	full := header{blockSize: bs, dataLen: uint64(len(data))}.fileSize()
	for i, size := range []int64{0, 1, headerSize - 1, headerSize, headerSize + 5, full - bs, full - 1, full + 1} {
		k := Key{ChunkID: uint64(200 + i)}
		mustPut(t, s, k, data)
		if err := os.Truncate(shardFile(t, s, k), size); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Read(ctx, k, 0, 1); !errors.Is(err, ErrCorrupt) {
			t.Errorf("file cut to %d bytes: Read = %v, want ErrCorrupt", size, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("file cut to %d bytes: Stat = %v, want ErrCorrupt", size, err)
		}
	}
}

func TestStoreMisplacedFile(t *testing.T) {
	s := openTestStore(t, 1, nil)
	a, b := Key{ChunkID: 1, Index: 1}, Key{ChunkID: 1, Index: 2}
	mustPut(t, s, a, []byte("aaaa"))
	mustPut(t, s, b, []byte("bbbb"))
	if err := os.Rename(shardFile(t, s, a), shardFile(t, s, b)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(context.Background(), b, 0, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a file holding another shard = %v, want ErrCorrupt", err)
	}
}

func TestStorePutRejectsBadInput(t *testing.T) {
	s := openTestStore(t, 1, nil)
	ctx := context.Background()
	data := []byte("hello")
	if err := s.Put(ctx, Key{ChunkID: 1}, data, crcOf(data)+1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Put with a bad crc = %v, want ErrInvalid", err)
	}
	big := make([]byte, MaxShardSize+1)
	if err := s.Put(ctx, Key{ChunkID: 2}, big, crcOf(big)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Put of %d bytes = %v, want ErrInvalid", len(big), err)
	}
	if st := s.Stats(); st.Shards != 0 || len(filesUnder(t, s.dirs[0].path, "")) != 1 { // only LOCK
		t.Fatalf("rejected puts left state behind: %+v, files %v", st, filesUnder(t, s.dirs[0].path, ""))
	}
}

func TestStoreDeleteAndRewrite(t *testing.T) {
	s := openTestStore(t, 1, nil)
	ctx := context.Background()
	k := Key{ChunkID: 77, Index: 4}
	mustPut(t, s, k, randBytes(1000, 1))
	second := randBytes(3*bs, 2)
	mustPut(t, s, k, second)
	got, _, err := s.Read(ctx, k, 0, 0)
	if err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after rewrite: Read = %d bytes, %v", len(got), err)
	}
	want := uint64(header{blockSize: bs, dataLen: uint64(len(second))}.fileSize())
	if st := s.Stats(); st.Shards != 1 || st.BytesUsed != want {
		t.Fatalf("Stats after rewrite = %+v, want 1 shard of %d bytes", st, want)
	}
	for i, want := range []bool{true, false} {
		existed, err := s.Delete(ctx, k)
		if err != nil || existed != want {
			t.Fatalf("Delete #%d = %v, %v; want %v", i, existed, err, want)
		}
	}
	if _, _, err := s.Read(ctx, k, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after delete = %v, want ErrNotFound", err)
	}
	if st := s.Stats(); st.Shards != 0 || st.BytesUsed != 0 {
		t.Fatalf("Stats after delete = %+v", st)
	}
}

func TestStoreReopen(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	ctx := context.Background()
	open := func() *Store {
		s, err := OpenStore(ctx, StoreOptions{Dirs: dirs, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	want := map[Key][]byte{}
	for i := range 20 {
		k := Key{ChunkID: uint64(i) << 40, Index: uint32(i % 6)}
		want[k] = randBytes(i*1000, uint64(i))
		mustPut(t, s, k, want[k])
	}
	before := s.Stats()
	// A crash mid-write leaves temp files; an operator may leave strays.
	tmp := filepath.Join(s.dirs[1].subdir(Key{ChunkID: 3}), Key{ChunkID: 3}.String()+tempMarker+"123")
	stray := filepath.Join(s.dirs[0].shards, "00", "notes.txt")
	for _, p := range []string{tmp, stray} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenStore(ctx, StoreOptions{Dirs: dirs[1:]}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second OpenStore on a locked dir = %v, want an in-use error", err)
	}
	s.Close()

	s = open()
	defer s.Close()
	if after := s.Stats(); after.Shards != before.Shards || after.BytesUsed != before.BytesUsed {
		t.Fatalf("after reopen %+v, before %+v", after, before)
	}
	for k, data := range want {
		got, _, err := s.Read(ctx, k, 0, 0)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after reopen Read(%v) = %d bytes, %v", k, len(got), err)
		}
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file survived reopen: %v", err)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Fatalf("unknown file was removed: %v", err)
	}
}

func TestStoreReopenKeepsNewestDuplicate(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	ctx := context.Background()
	s, err := OpenStore(ctx, StoreOptions{Dirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	k := Key{ChunkID: 8}
	oldData, newData := []byte("old version"), []byte("new version!")
	mustPut(t, s, k, newData)
	e, _ := s.lookup(k)
	other := 1 - e.dir
	// Simulate a crash between writing the new copy and removing the old.
	prefix, _ := encodePrefix(nil, k, bs, oldData, nil)
	oldPath := s.dirs[other].shardPath(k)
	os.MkdirAll(filepath.Dir(oldPath), 0o755)
	if err := os.WriteFile(oldPath, append(prefix, oldData...), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(oldPath, past, past)
	s.Close()

	s, err = OpenStore(ctx, StoreOptions{Dirs: dirs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, err := s.Read(ctx, k, 0, 0)
	if err != nil || !bytes.Equal(got, newData) {
		t.Fatalf("Read = %q, %v; want the newer copy", got, err)
	}
	if _, err := os.Stat(oldPath); !errors.Is(err, os.ErrNotExist) || s.Stats().Shards != 1 {
		t.Fatalf("older duplicate not removed: %v", err)
	}
}

func TestStoreCapacityCountsSharedFSOnce(t *testing.T) {
	s := openTestStore(t, 3, func(o *StoreOptions) { o.ReserveBytes = 0 })
	c, err := s.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := statfs(s.dirs[0].path)
	if err != nil {
		t.Fatal(err)
	}
	// All three temp dirs are on one file system.
	if c.TotalBytes != sp.total || !c.Writable || c.FreeBytes == 0 || c.FreeBytes > c.TotalBytes {
		t.Fatalf("Capacity = %+v, statfs = %+v", c, sp)
	}
}

func TestStoreConcurrent(t *testing.T) {
	s := openTestStore(t, 2, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 30 {
				k := Key{ChunkID: uint64(i % 5), Index: uint32(w % 2)} // shared keys
				data := randBytes(bs+i, uint64(w*100+i))
				if err := s.Put(ctx, k, data, crcOf(data)); err != nil {
					t.Error(err)
					return
				}
				got, _, err := s.Read(ctx, k, 0, 0)
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("Read(%v): %v", k, err)
				}
				if err == nil && len(got) < bs {
					t.Errorf("Read(%v) returned %d bytes", k, len(got))
				}
				if i%7 == 0 {
					s.Delete(ctx, k)
				}
			}
		})
	}
	wg.Wait()
	var n uint64
	for _, d := range s.dirs {
		n += uint64(len(filesUnder(t, d.shards, "")))
	}
	if st := s.Stats(); st.Shards != n {
		t.Fatalf("index holds %d shards, disks hold %d files", st.Shards, n)
	}
}

func TestStoreClosed(t *testing.T) {
	s := openTestStore(t, 1, nil)
	s.Close()
	if err := s.Put(context.Background(), Key{}, nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestParseShardName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"00000000000000ff.3", true},
		{"00000000000000FF.3", false},
		{"ff.3", false},
		{"00000000000000ff.03", false},
		{"00000000000000ff.+3", false},
		{"00000000000000ff.4294967296", false},
		{"00000000000000ff", false},
		{"00000000000000ff.3" + tempMarker + "1", false},
	} {
		k, ok := parseShardName(tc.name)
		if ok != tc.ok || (ok && k.String() != tc.name) {
			t.Errorf("parseShardName(%q) = %v, %v", tc.name, k, ok)
		}
	}
}
