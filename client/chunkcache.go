package client

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// The chunk cache keeps whole decoded chunks on the node's local disk.
// Chunks are immutable and never reuse an id, so a cached chunk is never
// stale: no invalidation exists. Several processes (every mount of a node)
// may share one directory, so the disk, not this process's index, is the
// truth: files appear atomically (temp file + rename), any file may vanish
// (another process evicted it: a miss), and recency is the file's mtime,
// which a hit refreshes so that the other processes see it when they
// rescan.
//
// Layout: DIR/v1/XX/ID-SIZE-CRC, where XX is the low byte of the id (keeps
// directories small), ID the chunk id, SIZE its size and CRC its CRC32C
// from the metadata (0 when it has none), all hex. A file holds the chunk's
// bytes and then their CRC32C (4 bytes, little endian), so that even a
// chunk without a metadata checksum is checked when read back.

const (
	cacheVersionDir = "v1"
	cacheTmpPrefix  = ".tmp-"
	cacheTrailer    = 4
	// DefaultCacheBytes bounds the chunk cache when Config.CacheBytes is 0.
	DefaultCacheBytes = 1 << 30
	// staleTmpAge is how old a temp file must be before a scan removes it:
	// younger ones may belong to a process writing them right now.
	staleTmpAge = 10 * time.Minute
)

// cacheKey names one chunk's content. Size and CRC are part of it: a
// chunk cut by a truncate keeps its id but gets a new size (and no CRC).
type cacheKey struct {
	id   uint64
	size int64
	crc  uint32
}

func keyOf(ch *stratapb.Chunk) cacheKey {
	return cacheKey{id: ch.GetId(), size: int64(ch.GetSize()), crc: ch.GetCrc32C()}
}

func (k cacheKey) name() string { return fmt.Sprintf("%x-%x-%x", k.id, k.size, k.crc) }

func parseKey(name string) (cacheKey, bool) {
	var k cacheKey
	n, err := fmt.Sscanf(name, "%x-%x-%x", &k.id, &k.size, &k.crc)
	return k, err == nil && n == 3 && k.name() == name
}

// chunkCache is a bounded, LRU, on-disk cache of whole chunks. Errors of
// the cache never fail a read: they make a miss.
type chunkCache struct {
	root  string // DIR/v1
	limit int64
	log   *slog.Logger

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recent first
	byKey map[cacheKey]*list.Element
	bytes int64
	// added counts bytes put since the last scan; past limit/4 the next
	// put rescans, to learn what other processes added.
	added int64
}

type cacheEntry struct {
	key   cacheKey
	bytes int64 // on disk, trailer included
}

// openChunkCache opens (creating) the cache under dir and indexes what it
// holds, oldest evicted first if it is over limit.
func openChunkCache(dir string, limit int64, log *slog.Logger) (*chunkCache, error) {
	if limit <= 0 {
		limit = DefaultCacheBytes
	}
	cc := &chunkCache{root: filepath.Join(dir, cacheVersionDir), limit: limit, log: log}
	if err := os.MkdirAll(cc.root, 0o755); err != nil {
		return nil, fmt.Errorf("client: chunk cache: %w", err)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.rescanLocked()
	return cc, nil
}

func (cc *chunkCache) path(k cacheKey) string {
	return filepath.Join(cc.root, fmt.Sprintf("%02x", byte(k.id)), k.name())
}

// scanned is one cache file found on disk.
type scanned struct {
	cacheEntry
	mtime time.Time
}

// rescanLocked rebuilds the index from the directory: the files present,
// ordered by mtime (the recency every process maintains), and then evicts
// down to the limit. Stale temp files (a process died writing them) and
// files of a wrong size are removed.
func (cc *chunkCache) rescanLocked() {
	var found []scanned
	filepath.WalkDir(cc.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // an unreadable subdirectory is skipped, not fatal
		}
		if s, ok := cc.scanFile(p, d); ok {
			found = append(found, s)
		}
		return nil
	})
	sortByMtime(found)
	cc.lru, cc.byKey, cc.bytes, cc.added = list.New(), make(map[cacheKey]*list.Element, len(found)), 0, 0
	for _, s := range found {
		cc.byKey[s.key] = cc.lru.PushBack(&s.cacheEntry)
		cc.bytes += s.bytes
	}
	cc.evictLocked()
}

func (cc *chunkCache) scanFile(p string, d fs.DirEntry) (scanned, bool) {
	info, err := d.Info()
	if err != nil {
		return scanned{}, false // evicted meanwhile
	}
	name := d.Name()
	if strings.HasPrefix(name, cacheTmpPrefix) {
		if time.Since(info.ModTime()) > staleTmpAge {
			os.Remove(p)
		}
		return scanned{}, false
	}
	k, ok := parseKey(name)
	if !ok {
		return scanned{}, false // not ours: leave it alone
	}
	if info.Size() != k.size+cacheTrailer {
		os.Remove(p)
		return scanned{}, false
	}
	return scanned{cacheEntry{key: k, bytes: info.Size()}, info.ModTime()}, true
}

// sortByMtime orders newest first (the front of the LRU list).
func sortByMtime(s []scanned) {
	slices.SortFunc(s, func(a, b scanned) int { return b.mtime.Compare(a.mtime) })
}

// evictLocked removes least recently used files until the cache fits.
func (cc *chunkCache) evictLocked() {
	for cc.bytes > cc.limit && cc.lru.Len() > 0 {
		el := cc.lru.Back()
		e := el.Value.(*cacheEntry)
		cc.dropLocked(el)
		if err := os.Remove(cc.path(e.key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			cc.log.Warn("chunk cache: evict", "err", err)
		}
	}
}

func (cc *chunkCache) dropLocked(el *list.Element) {
	e := cc.lru.Remove(el).(*cacheEntry)
	delete(cc.byKey, e.key)
	cc.bytes -= e.bytes
}

// forget drops k from the index (its file is gone or bad).
func (cc *chunkCache) forget(k cacheKey) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if el, ok := cc.byKey[k]; ok {
		cc.dropLocked(el)
	}
}

// touch marks k as just used, here and (mtime) for other processes.
func (cc *chunkCache) touch(k cacheKey, p string) {
	now := time.Now()
	os.Chtimes(p, now, now)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if el, ok := cc.byKey[k]; ok {
		cc.lru.MoveToFront(el)
		return
	}
	// Another process cached it: index it too.
	cc.byKey[k] = cc.lru.PushFront(&cacheEntry{key: k, bytes: k.size + cacheTrailer})
	cc.bytes += k.size + cacheTrailer
	cc.evictLocked()
}

// get fills dst with bytes [off, off+len(dst)) of chunk k from the cache
// and reports whether it could. The whole file is read and checked first:
// a file that fails its checksum is removed (the caller fetches the chunk
// from the dataservers and caches it again). scratch provides a buffer of
// k.size bytes when dst is not the whole chunk.
func (cc *chunkCache) get(k cacheKey, dst []byte, off int, scratch func(int) (*[]byte, func())) bool {
	p := cc.path(k)
	f, err := os.Open(p)
	if err != nil {
		cc.forget(k) // evicted, perhaps by another process
		return false
	}
	defer f.Close()
	buf, whole := dst, off == 0 && int64(len(dst)) == k.size
	if !whole {
		b, release := scratch(int(k.size))
		defer release()
		buf = *b
	}
	if err := cc.readChecked(f, k, buf); err != nil {
		cc.log.Warn("chunk cache: bad file removed", "file", p, "err", err)
		os.Remove(p)
		cc.forget(k)
		return false
	}
	if !whole {
		copy(dst, buf[off:])
	}
	cc.touch(k, p)
	return true
}

// readChecked reads the chunk's bytes into buf (k.size long) and checks
// them against the file's trailer and the chunk's own CRC32C.
func (cc *chunkCache) readChecked(f *os.File, k cacheKey, buf []byte) error {
	var trailer [cacheTrailer]byte
	if _, err := io.ReadFull(f, buf); err != nil {
		return err
	}
	if _, err := io.ReadFull(f, trailer[:]); err != nil {
		return err
	}
	sum := crc32c(buf)
	if want := binary.LittleEndian.Uint32(trailer[:]); sum != want {
		return fmt.Errorf("crc32c %08x, trailer says %08x", sum, want)
	}
	if k.crc != 0 && sum != k.crc {
		return fmt.Errorf("crc32c %08x, chunk's is %08x", sum, k.crc)
	}
	return nil
}

// put stores data, the whole chunk k. It writes a temp file and renames it
// into place, so that no reader, in any process, sees a partial file.
func (cc *chunkCache) put(k cacheKey, data []byte) {
	if int64(len(data)) != k.size || k.size+cacheTrailer > cc.limit {
		return
	}
	cc.mu.Lock()
	_, have := cc.byKey[k]
	cc.mu.Unlock()
	if have {
		return
	}
	if err := cc.write(k, data); err != nil {
		cc.log.Warn("chunk cache: store", "err", err)
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.byKey[k]; !ok { // a concurrent put may have won
		cc.byKey[k] = cc.lru.PushFront(&cacheEntry{key: k, bytes: k.size + cacheTrailer})
		cc.bytes += k.size + cacheTrailer
		cc.added += k.size + cacheTrailer
	}
	if cc.added > cc.limit/4 {
		cc.rescanLocked() // counts what other processes added, and evicts
		return
	}
	cc.evictLocked()
}

func (cc *chunkCache) write(k cacheKey, data []byte) error {
	p := cc.path(k)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, cacheTmpPrefix)
	if err != nil {
		return err
	}
	var trailer [cacheTrailer]byte
	binary.LittleEndian.PutUint32(trailer[:], crc32c(data))
	_, err = f.Write(data)
	if err == nil {
		_, err = f.Write(trailer[:])
	}
	// No fsync: after a crash a torn file fails its checksum and is
	// removed, which is all a cache needs.
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
