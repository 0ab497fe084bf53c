package dataserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// Put stores data as shard k, replacing any previous version atomically.
// crc is the CRC32C of data as the sender computed it; a mismatch means the
// data was damaged on the way and nothing is stored.
func (s *Store) Put(ctx context.Context, k Key, data []byte, crc uint32) error {
	if err := s.checkOpen(ctx); err != nil {
		return err
	}
	if len(data) > MaxShardSize {
		return fmt.Errorf("%w: shard %v is %d bytes, more than %d", ErrInvalid, k, len(data), MaxShardSize)
	}
	bp := s.getBuf()
	defer s.bufs.Put(bp)
	prefix, sum := encodePrefix(*bp, k, s.opts.BlockSize, data, s.shift)
	*bp = prefix
	if sum != crc {
		return fmt.Errorf("%w: crc32c of shard %v data is %08x, request says %08x", ErrInvalid, k, sum, crc)
	}
	mu := s.keyLock(k)
	mu.Lock()
	defer mu.Unlock()
	return s.place(ctx, k, prefix, data)
}

func (s *Store) getBuf() *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 4096)
	return &b
}

// place writes the shard into the first dir that takes it. A dir that
// turns out to be full, read-only or failing is skipped for the next one:
// statfs said there was room, but other writers and failing disks do not
// ask statfs first.
func (s *Store) place(ctx context.Context, k Key, prefix, data []byte) error {
	size := int64(len(prefix) + len(data))
	old, had := s.lookup(k)
	var errs []error
	allFull := true
	for _, di := range s.candidates(size, old, had) {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := s.dirs[di]
		err := s.writeIn(d, k, prefix, data)
		if err == nil {
			s.commit(k, entry{dir: di, size: size}, old, had)
			return s.syncPlaced(d, k)
		}
		if !isNoSpace(err) && !isDiskFailure(err) {
			return err
		}
		s.log.Warn("cannot write shard in dir; trying another", "dir", d.path, "shard", k, "err", err)
		errs = append(errs, err)
		allFull = allFull && isNoSpace(err)
	}
	switch {
	case len(errs) == 0:
		return fmt.Errorf("%w: shard %v needs %d bytes above the %d-byte reserve", ErrNoSpace, k, size, s.opts.ReserveBytes)
	case allFull:
		return fmt.Errorf("%w: shard %v: %w", ErrNoSpace, k, errors.Join(errs...))
	}
	return fmt.Errorf("dataserver: no dir could store shard %v: %w", k, errors.Join(errs...))
}

// isDiskFailure reports errors of a disk rather than of the request.
func isDiskFailure(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS)
}

// syncPlaced makes the rename of a new shard durable. It runs after the
// index is updated: the file is in place whether or not the fsync works,
// and the index must say so; the caller still gets the error, so the write
// is not acknowledged.
func (s *Store) syncPlaced(d *diskDir, k Key) error {
	if !s.opts.Fsync {
		return nil
	}
	if err := syncDir(d.subdir(k)); err != nil {
		return fmt.Errorf("dataserver: write shard %v in %s: %w", k, d.path, err)
	}
	return nil
}

// candidates lists the dirs with room for size bytes above the reserve,
// most free space first. A rewrite prefers the dir already holding the
// shard, so that the rename replaces it atomically in place.
func (s *Store) candidates(size int64, old entry, had bool) []int {
	type cand struct {
		dir  int
		free uint64
	}
	var cs []cand
	for i, d := range s.dirs {
		sp, err := s.statfs(d.path)
		if err != nil {
			s.log.Warn("cannot read free space; skipping dir", "dir", d.path, "err", err)
			continue
		}
		if sp.free >= s.opts.ReserveBytes && sp.free-s.opts.ReserveBytes >= uint64(size) {
			cs = append(cs, cand{i, sp.free})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if had && (a.dir == old.dir) != (b.dir == old.dir) {
			if a.dir == old.dir {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.free, a.free)
	})
	out := make([]int, len(cs))
	for i, c := range cs {
		out[i] = c.dir
	}
	return out
}

// writeIn writes a shard into a temp file of d (fsynced if configured) and
// renames it into place. On failure the temp file is removed, so a full
// disk keeps no partial file.
func (s *Store) writeIn(d *diskDir, k Key, prefix, data []byte) (err error) {
	dir := d.subdir(k)
	f, err := os.CreateTemp(dir, k.String()+tempMarker+"*")
	if errors.Is(err, fs.ErrNotExist) {
		if err = d.makeSubdir(k); err == nil {
			f, err = os.CreateTemp(dir, k.String()+tempMarker+"*")
		}
	}
	if err != nil {
		return fmt.Errorf("dataserver: write shard %v in %s: %w", k, d.path, err)
	}
	tmp, closed := f.Name(), false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(tmp)
			err = fmt.Errorf("dataserver: write shard %v in %s: %w", k, d.path, err)
		}
	}()
	if s.beforeWrite != nil {
		if err = s.beforeWrite(d.path); err != nil {
			return err
		}
	}
	if _, err = f.Write(prefix); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if s.opts.Fsync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	closed = true
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, d.shardPath(k))
}

// commit records a written shard, and removes the previous version when it
// lived in another dir.
func (s *Store) commit(k Key, e, old entry, had bool) {
	s.mu.Lock()
	s.index[k] = e
	s.bytes += e.size
	if had {
		s.bytes -= old.size
	}
	s.mu.Unlock()
	if had && old.dir != e.dir {
		p := s.dirs[old.dir].shardPath(k)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("cannot remove replaced shard", "path", p, "err", err)
		}
	}
}
