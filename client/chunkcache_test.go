package client

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newCacheT(t *testing.T, dir string, limit int64) *chunkCache {
	t.Helper()
	cc, err := openChunkCache(dir, limit, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

func testScratch(n int) (*[]byte, func()) {
	b := make([]byte, n)
	return &b, func() {}
}

// cacheChunk makes a chunk's bytes and key; withCRC gives it a metadata
// CRC32C, as every chunk not cut by a truncate has.
func cacheChunk(id uint64, n int, withCRC bool) (cacheKey, []byte) {
	data := randBytes(n, id)
	k := cacheKey{id: id, size: int64(n)}
	if withCRC {
		k.crc = crc32c(data)
	}
	return k, data
}

// cacheHas reads k whole from cc and reports whether it hit with want.
func cacheHas(t *testing.T, cc *chunkCache, k cacheKey, want []byte) bool {
	t.Helper()
	got := make([]byte, k.size)
	if !cc.get(k, got, 0, testScratch) {
		return false
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("chunk %d: cache returned wrong bytes", k.id)
	}
	return true
}

func TestChunkCacheHitMiss(t *testing.T) {
	cc := newCacheT(t, t.TempDir(), 1<<20)
	k, data := cacheChunk(7, 100<<10, true)
	if cacheHas(t, cc, k, data) {
		t.Fatal("hit in an empty cache")
	}
	cc.put(k, data)
	if !cacheHas(t, cc, k, data) {
		t.Fatal("miss after put")
	}
	// A part of the chunk is served from the whole file.
	part := make([]byte, 1000)
	if !cc.get(k, part, 5000, testScratch) || !bytes.Equal(part, data[5000:6000]) {
		t.Fatal("partial read from the cache failed or is wrong")
	}
	// Same id, other size (a chunk cut by a truncate): another key.
	cut := cacheKey{id: k.id, size: k.size - 10}
	if cacheHas(t, cc, cut, data[:cut.size]) {
		t.Fatal("hit for a key with another size")
	}
	// A chunk without a metadata CRC is still checked, by the trailer.
	k0, data0 := cacheChunk(8, 5000, false)
	cc.put(k0, data0)
	if !cacheHas(t, cc, k0, data0) {
		t.Fatal("miss for a chunk without CRC")
	}
}

func TestChunkCacheEvictsLRUByBytes(t *testing.T) {
	const size = 64 << 10
	cc := newCacheT(t, t.TempDir(), 3*(size+cacheTrailer))
	var keys []cacheKey
	var datas [][]byte
	for i := range 3 {
		k, d := cacheChunk(uint64(i+1), size, true)
		cc.put(k, d)
		keys, datas = append(keys, k), append(datas, d)
	}
	if !cacheHas(t, cc, keys[0], datas[0]) { // chunk 1 is now the most recent
		t.Fatal("chunk 1 missing before the cache was full")
	}
	k4, d4 := cacheChunk(4, size, true)
	cc.put(k4, d4) // over the limit: chunk 2, least recently used, goes
	if cacheHas(t, cc, keys[1], datas[1]) {
		t.Fatal("least recently used chunk 2 was not evicted")
	}
	for _, i := range []int{0, 2} {
		if !cacheHas(t, cc, keys[i], datas[i]) {
			t.Fatalf("chunk %d evicted, want only chunk 2 gone", i+1)
		}
	}
	if !cacheHas(t, cc, k4, d4) {
		t.Fatal("new chunk 4 missing")
	}
	if cc.bytes > cc.limit {
		t.Fatalf("cache holds %d bytes, limit %d", cc.bytes, cc.limit)
	}
	if n := countCacheFiles(t, cc.root); n != 3 {
		t.Fatalf("%d files on disk, want 3", n)
	}
}

func countCacheFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestChunkCacheRebuildsOnRestart(t *testing.T) {
	dir := t.TempDir()
	const size = 32 << 10
	cc := newCacheT(t, dir, 1<<20)
	var keys []cacheKey
	var datas [][]byte
	for i := range 4 {
		k, d := cacheChunk(uint64(100+i), size, i%2 == 0)
		cc.put(k, d)
		keys, datas = append(keys, k), append(datas, d)
		// Distinct mtimes, so that recency survives the restart.
		old := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(cc.path(k), old, old)
	}
	// Debris of a process that died while writing: an old temp file goes,
	// a young one (perhaps being written now) stays.
	sub := filepath.Dir(cc.path(keys[0]))
	oldTmp, youngTmp := filepath.Join(sub, cacheTmpPrefix+"old"), filepath.Join(sub, cacheTmpPrefix+"young")
	for _, p := range []string{oldTmp, youngTmp} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	os.Chtimes(oldTmp, long, long)

	// Restart with room for three: the oldest (chunk 100) is evicted.
	cc2 := newCacheT(t, dir, 3*(size+cacheTrailer))
	if cacheHas(t, cc2, keys[0], datas[0]) {
		t.Fatal("oldest chunk kept over the limit after restart")
	}
	for i := 1; i < 4; i++ {
		if !cacheHas(t, cc2, keys[i], datas[i]) {
			t.Fatalf("chunk %d lost across the restart", keys[i].id)
		}
	}
	if _, err := os.Stat(oldTmp); !os.IsNotExist(err) {
		t.Fatalf("stale temp file not removed: %v", err)
	}
	if _, err := os.Stat(youngTmp); err != nil {
		t.Fatalf("young temp file removed: %v", err)
	}
}

func TestChunkCacheCorruptFileIsDropped(t *testing.T) {
	cc := newCacheT(t, t.TempDir(), 1<<20)
	for _, withCRC := range []bool{true, false} {
		k, data := cacheChunk(uint64(200+len(cc.byKey)), 70<<10, withCRC)
		cc.put(k, data)
		p := cc.path(k)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{^data[1234]}, 1234) // one flipped byte, size kept
		f.Close()
		if cacheHas(t, cc, k, data) {
			t.Fatalf("crc=%v: corrupt cache file served", withCRC)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("crc=%v: corrupt cache file not removed: %v", withCRC, err)
		}
		cc.put(k, data) // what the client does after fetching it again
		if !cacheHas(t, cc, k, data) {
			t.Fatalf("crc=%v: re-fetched chunk not cached", withCRC)
		}
	}
	// A truncated file (size wrong) is a miss too.
	k, data := cacheChunk(300, 10<<10, true)
	cc.put(k, data)
	os.Truncate(cc.path(k), 100)
	if cacheHas(t, cc, k, data) {
		t.Fatal("truncated cache file served")
	}
}

// TestChunkCacheSharedDir runs two caches on one directory, as two mounts
// of a node do: each sees what the other stored, survives the other's
// evictions as misses, and files are never seen half written.
func TestChunkCacheSharedDir(t *testing.T) {
	dir := t.TempDir()
	const size = 16 << 10
	a, b := newCacheT(t, dir, 1<<20), newCacheT(t, dir, 1<<20)
	k, data := cacheChunk(400, size, true)
	a.put(k, data)
	if !cacheHas(t, b, k, data) {
		t.Fatal("cache b misses what cache a stored")
	}
	if _, ok := b.byKey[k]; !ok {
		t.Fatal("cache b did not index the chunk it found")
	}
	os.Remove(a.path(k)) // a evicts it behind b's back
	if cacheHas(t, b, k, data) {
		t.Fatal("hit on a file another process removed")
	}
	if _, ok := b.byKey[k]; ok || b.bytes != 0 {
		t.Fatalf("cache b still accounts for the removed file (%d bytes)", b.bytes)
	}
	// Concurrent puts and gets of the same chunks from both caches.
	done := make(chan struct{})
	for _, cc := range []*chunkCache{a, b} {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 50 {
				k, d := cacheChunk(uint64(500+i%5), size, i%5%2 == 0)
				cc.put(k, d)
				got := make([]byte, size)
				if cc.get(k, got, 0, testScratch) && !bytes.Equal(got, d) {
					t.Errorf("chunk %d: wrong bytes under concurrency", k.id)
				}
			}
		}()
	}
	<-done
	<-done
	// Restarting b picks up everything on disk, a's files included.
	b2 := newCacheT(t, dir, 1<<20)
	if len(b2.byKey) != 5 {
		t.Fatalf("restarted cache indexes %d chunks, want 5", len(b2.byKey))
	}
}

func TestCacheKeyNames(t *testing.T) {
	for _, k := range []cacheKey{{1, 2, 3}, {^uint64(0), 4 << 20, 0xffffffff}, {0x10, 0, 0}} {
		got, ok := parseKey(k.name())
		if !ok || got != k {
			t.Fatalf("parseKey(%q) = %v, %v; want %v", k.name(), got, ok, k)
		}
	}
	for _, bad := range []string{"x", "1-2", "01-2-3", "1-2-3.tmp", cacheTmpPrefix + "1"} {
		if _, ok := parseKey(bad); ok {
			t.Fatalf("parseKey(%q) accepted", bad)
		}
	}
}

// TestClusterChunkCache reads through a client with a cache from a real
// cluster: whole chunks read are cached, and then served with every
// dataserver down; a corrupt cache file is fetched again.
func TestClusterChunkCache(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	dir := t.TempDir()
	c, err := New(Config{MetaAddrs: e.cl.MetaAddrs(), TLS: e.cl.ClientTLS(), Logger: testLogger(t), ShardTimeout: 2 * time.Second, CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	data := randBytes(10*64<<10+1234, 42) // 11 chunks, the last partial
	attr := e.put("/f", data)
	e.c, e.cluster.c = c, c // e.get and e.readAll now use the caching client

	if got := e.get("/f"); !bytes.Equal(got, data) { // cold: fills the cache
		t.Fatal("cold get: wrong bytes")
	}
	if n := len(c.cache.byKey); n != 11 {
		t.Fatalf("%d chunks cached after a whole get, want 11", n)
	}
	for i := range e.cl.Data {
		e.cl.KillData(i)
	}
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("warm get with no dataserver: wrong bytes")
	}
	if got := e.readAll(attr.Ino); !bytes.Equal(got, data) {
		t.Fatal("warm ReadAt with no dataserver: wrong bytes")
	}
	part := make([]byte, 100<<10) // across a chunk boundary
	if _, err := c.ReadAt(ctxT(t), attr.Ino, part, 30<<10); err != nil || !bytes.Equal(part, data[30<<10:130<<10]) {
		t.Fatalf("warm partial ReadAt: %v", err)
	}

	// A damaged cache file is not trusted: it is fetched again (the
	// dataservers are back) and replaced.
	for i := range e.cl.Data {
		e.cl.RestartData(i)
	}
	k := keyOf(e.chunk(attr.Ino, 3))
	p := c.cache.path(k)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[100] ^= 1
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.readAll(attr.Ino); !bytes.Equal(got, data) {
		t.Fatal("read over a corrupt cache file: wrong bytes")
	}
	if !cacheHas(t, c.cache, k, data[3*64<<10:4*64<<10]) {
		t.Fatal("corrupt chunk not cached again after the re-fetch")
	}
}
