package dataserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/strata-hpc/strata/internal/crc32c"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// StoreOptions configure a Store.
type StoreOptions struct {
	// Dirs hold the shard files; each is created if missing, probed for
	// writability and locked against a second store.
	Dirs []string
	// Fsync makes Put durable before it returns: the file and its
	// directory entry are fsynced.
	Fsync bool
	// BlockSize is the checksum block size of new shards (0: default).
	BlockSize int
	// ReserveBytes is kept free on every disk.
	ReserveBytes uint64
	Logger       *slog.Logger
}

// Store keeps shards as checksummed files in one or more directories. It is
// safe for concurrent use.
//
// Writes of one key are serialised by a striped lock; reads take no lock
// beyond the index lookup, since shard files are replaced by rename and an
// open descriptor keeps reading the file it opened.
type Store struct {
	opts StoreOptions
	log  *slog.Logger
	dirs []*diskDir

	keyLocks [256]sync.Mutex
	closed   atomic.Bool
	bufs     sync.Pool     // *[]byte for header+table prefixes
	shift    *crc32c.Shift // combines block CRCs into a shard CRC

	mu    sync.RWMutex
	index map[Key]entry
	bytes int64 // sum of shard file sizes

	checksumFailures atomic.Uint64

	// statfs looks up a directory's free space. It is a test seam: tests
	// replace it to make one directory look full, because a real full
	// disk (a tmpfs mount) needs root, which not every test run has.
	statfs func(dir string) (diskSpace, error)
	// beforeWrite, when set, runs before a shard's bytes are written to a
	// temp file in dir and may fail the write. A test seam for ENOSPC in
	// the middle of a write.
	beforeWrite func(dir string) error
}

// entry is where a shard lives: the index of its dir and its file size.
type entry struct {
	dir  int
	size int64
}

// ShardInfo is what Stat reports.
type ShardInfo struct {
	Size    uint64 // bytes of data
	ModTime time.Time
	Dir     string
}

// StoreStats are in-memory counters; reading them does no I/O.
type StoreStats struct {
	Shards           uint64
	BytesUsed        uint64 // bytes of shard files, headers included
	ChecksumFailures uint64 // reads that met a corrupt shard since start
}

// Capacity sums the disks of a store. File systems shared by several dirs
// are counted once.
type Capacity struct {
	TotalBytes uint64
	FreeBytes  uint64 // free above the reserve, i.e. usable for shards
	UsedBytes  uint64 // by shard files
	Shards     uint64
	Writable   bool // some dir has room above the reserve
}

// OpenStore opens (creating if needed) the directories, and builds the index
// by scanning them.
func OpenStore(ctx context.Context, opts StoreOptions) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, log: log, index: make(map[Key]entry), statfs: statfs, shift: crc32c.NewShift(int64(opts.BlockSize))}
	for _, p := range opts.Dirs {
		d, err := openDir(filepath.Clean(p))
		if err != nil {
			s.unlockDirs()
			return nil, err
		}
		s.dirs = append(s.dirs, d)
	}
	if err := s.load(ctx); err != nil {
		s.unlockDirs()
		return nil, err
	}
	st := s.Stats()
	log.Info("shard store opened", "dirs", len(s.dirs), "shards", st.Shards, "bytes", st.BytesUsed)
	return s, nil
}

func (o StoreOptions) validate() error {
	if len(o.Dirs) == 0 {
		return fmt.Errorf("%w: no data directory given", ErrInvalid)
	}
	seen := make(map[string]bool)
	for _, d := range o.Dirs {
		if d == "" {
			return fmt.Errorf("%w: empty data directory", ErrInvalid)
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("dataserver: data dir %s: %w", d, err)
		}
		if seen[abs] {
			return fmt.Errorf("%w: data directory %s given twice", ErrInvalid, d)
		}
		seen[abs] = true
	}
	if o.BlockSize != 0 && (o.BlockSize < MinBlockSize || o.BlockSize > MaxBlockSize) {
		return fmt.Errorf("%w: block size %d not in [%d, %d]", ErrInvalid, o.BlockSize, MinBlockSize, MaxBlockSize)
	}
	return nil
}

// load scans all dirs in parallel (they are usually separate disks) and
// merges the results into the index.
func (s *Store) load(ctx context.Context) error {
	results := make([]map[Key]found, len(s.dirs))
	errs := make([]error, len(s.dirs))
	var wg sync.WaitGroup
	for i, d := range s.dirs {
		wg.Go(func() { results[i], errs[i] = d.scan(ctx, s.log) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	newest := make(map[Key]int64)
	for i, res := range results {
		for k, f := range res {
			if old, dup := s.index[k]; dup {
				if f.mtime <= newest[k] {
					s.dropDuplicate(k, i, old.dir)
					continue
				}
				s.dropDuplicate(k, old.dir, i)
				s.bytes -= old.size
			}
			s.index[k] = entry{dir: i, size: f.size}
			newest[k] = f.mtime
			s.bytes += f.size
		}
	}
	return nil
}

// dropDuplicate removes the copy of k in dir drop, keeping the one in keep.
// Two copies exist only if a crash cut short a rewrite that moved a shard
// to another disk; the newer copy is the rewrite.
func (s *Store) dropDuplicate(k Key, drop, keep int) {
	p := s.dirs[drop].shardPath(k)
	s.log.Warn("shard found in two dirs; removing the older copy", "shard", k, "removed", p, "kept", s.dirs[keep].path)
	if err := os.Remove(p); err != nil {
		s.log.Error("cannot remove duplicate shard", "path", p, "err", err)
	}
}

// Close releases the directory locks. Calls made after Close fail with
// ErrClosed; calls already running may complete.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.unlockDirs()
	return nil
}

func (s *Store) unlockDirs() {
	for _, d := range s.dirs {
		d.unlock()
	}
}

func (s *Store) keyLock(k Key) *sync.Mutex {
	return &s.keyLocks[(k.ChunkID*31+uint64(k.Index))%uint64(len(s.keyLocks))]
}

func (s *Store) lookup(k Key) (entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.index[k]
	return e, ok
}

func (s *Store) checkOpen(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// Read returns bytes [off, off+length) of shard k (length 0: to the end) and
// the shard's size. It never returns bytes that failed their checksum.
func (s *Store) Read(ctx context.Context, k Key, off, length uint64) ([]byte, uint64, error) {
	return s.read(ctx, k, off, length, nil)
}

// read is Read with a buffer allocator (see readRange).
func (s *Store) read(ctx context.Context, k Key, off, length uint64, alloc func(int) []byte) ([]byte, uint64, error) {
	if err := s.checkOpen(ctx); err != nil {
		return nil, 0, err
	}
	f, _, err := s.open(k)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("dataserver: stat shard %v: %w", k, err)
	}
	data, size, err := readRange(f, fi.Size(), k, off, length, alloc)
	if err != nil {
		s.noteCorrupt(f.Name(), err)
		return nil, 0, err
	}
	return data, size, nil
}

func (s *Store) noteCorrupt(path string, err error) {
	if errors.Is(err, ErrCorrupt) {
		s.checksumFailures.Add(1)
		s.log.Warn("corrupt shard", "path", path, "err", err)
	}
}

// open opens shard k's file and returns the dir holding it. A concurrent
// Put may move the shard to another dir between the lookup and the open, so
// a vanished file is looked up once more before giving up.
func (s *Store) open(k Key) (*os.File, *diskDir, error) {
	for range 2 {
		e, ok := s.lookup(k)
		if !ok {
			return nil, nil, fmt.Errorf("%w: %v", ErrNotFound, k)
		}
		d := s.dirs[e.dir]
		f, err := os.Open(d.shardPath(k))
		if err == nil {
			return f, d, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("dataserver: open shard %v: %w", k, err)
		}
	}
	return nil, nil, fmt.Errorf("%w: %v is indexed but its file is gone", ErrNotFound, k)
}

// Stat reports a shard's size and modification time, after checking its
// header.
func (s *Store) Stat(ctx context.Context, k Key) (ShardInfo, error) {
	if err := s.checkOpen(ctx); err != nil {
		return ShardInfo{}, err
	}
	f, d, err := s.open(k)
	if err != nil {
		return ShardInfo{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ShardInfo{}, fmt.Errorf("dataserver: stat shard %v: %w", k, err)
	}
	h, err := readHeader(f, fi.Size(), k)
	if err != nil {
		s.noteCorrupt(f.Name(), err)
		return ShardInfo{}, err
	}
	return ShardInfo{Size: h.dataLen, ModTime: fi.ModTime(), Dir: d.path}, nil
}

// Delete removes shard k. It is idempotent and reports whether the shard
// existed. The directory is not fsynced: a delete lost in a crash leaves an
// orphan shard, which the metadata service's garbage collection removes
// again.
func (s *Store) Delete(ctx context.Context, k Key) (bool, error) {
	if err := s.checkOpen(ctx); err != nil {
		return false, err
	}
	mu := s.keyLock(k)
	mu.Lock()
	defer mu.Unlock()
	e, ok := s.lookup(k)
	if !ok {
		return false, nil
	}
	if err := os.Remove(s.dirs[e.dir].shardPath(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("dataserver: delete shard %v: %w", k, err)
	}
	s.mu.Lock()
	delete(s.index, k)
	s.bytes -= e.size
	s.mu.Unlock()
	return true, nil
}

// Stats returns the in-memory counters.
func (s *Store) Stats() StoreStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return StoreStats{
		Shards:           uint64(len(s.index)),
		BytesUsed:        uint64(s.bytes),
		ChecksumFailures: s.checksumFailures.Load(),
	}
}

// Capacity sums size and free space over the store's file systems.
func (s *Store) Capacity(ctx context.Context) (Capacity, error) {
	if err := s.checkOpen(ctx); err != nil {
		return Capacity{}, err
	}
	st := s.Stats()
	c := Capacity{UsedBytes: st.BytesUsed, Shards: st.Shards}
	seen := make(map[uint64]bool)
	var errs []error
	for _, d := range s.dirs {
		sp, err := s.statfs(d.path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sp.free > s.opts.ReserveBytes {
			c.Writable = true
		}
		if seen[d.dev] {
			continue
		}
		seen[d.dev] = true
		c.TotalBytes += sp.total
		if sp.free > s.opts.ReserveBytes {
			c.FreeBytes += sp.free - s.opts.ReserveBytes
		}
	}
	if len(errs) == len(s.dirs) {
		return c, errors.Join(errs...)
	}
	return c, nil
}

// Dirs returns the store's directories.
func (s *Store) Dirs() []string {
	out := make([]string, len(s.dirs))
	for i, d := range s.dirs {
		out[i] = d.path
	}
	return out
}

// Keys lists the shards in the index, sorted.
func (s *Store) Keys() []Key {
	s.mu.RLock()
	out := make([]Key, 0, len(s.index))
	for k := range s.index {
		out = append(out, k)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Key) int {
		if a.ChunkID != b.ChunkID {
			return cmp.Compare(a.ChunkID, b.ChunkID)
		}
		return cmp.Compare(a.Index, b.Index)
	})
	return out
}

// has reports whether shard k is in the index.
func (s *Store) has(k Key) bool {
	_, ok := s.lookup(k)
	return ok
}
