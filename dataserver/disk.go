package dataserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Layout of one data directory:
//
//	<dir>/LOCK                        flock'ed while a store has the dir open
//	<dir>/IDENTITY                    the dataserver's UUID (identity.go)
//	<dir>/shards/<xx>/<chunk>.<index> one file per shard (format.go)
//
// The 256 sub-directories keep directory sizes reasonable for millions of
// shards.
const (
	shardsDir  = "shards"
	lockFile   = "LOCK"
	tempMarker = ".tmp-"
)

// diskDir is one data directory of a store.
type diskDir struct {
	path   string
	shards string
	lock   *os.File // held open (and flock'ed) while the store is open
	dev    uint64   // device, so a file system shared by two dirs counts once
}

// diskSpace is what statfs says about a file system.
type diskSpace struct {
	total uint64
	free  uint64 // available to this (unprivileged or not) process
}

// statfs reports the size and free space of the file system holding path.
func statfs(path string) (diskSpace, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return diskSpace{}, fmt.Errorf("dataserver: statfs %s: %w", path, err)
	}
	unit := uint64(st.Frsize)
	if unit == 0 {
		unit = uint64(st.Bsize)
	}
	return diskSpace{total: st.Blocks * unit, free: st.Bavail * unit}, nil
}

// isNoSpace reports whether err means the disk (or the quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// subdirOf spreads chunks over the sub-directories. Fibonacci hashing mixes
// the high bits so that sequential chunk ids do not crowd one directory.
func subdirOf(k Key) string {
	const hexDigits = "0123456789abcdef"
	b := byte((k.ChunkID * 0x9E3779B97F4A7C15) >> 56)
	return string([]byte{hexDigits[b>>4], hexDigits[b&15]})
}

func (d *diskDir) subdir(k Key) string { return filepath.Join(d.shards, subdirOf(k)) }

func (d *diskDir) shardPath(k Key) string { return filepath.Join(d.shards, subdirOf(k), k.String()) }

// parseShardName is the inverse of Key.String. It accepts only the
// canonical form, so that stray files are never mistaken for shards.
func parseShardName(name string) (Key, bool) {
	id, idx, ok := strings.Cut(name, ".")
	if !ok || len(id) != 16 {
		return Key{}, false
	}
	c, err1 := strconv.ParseUint(id, 16, 64)
	i, err2 := strconv.ParseUint(idx, 10, 32)
	k := Key{ChunkID: c, Index: uint32(i)}
	if err1 != nil || err2 != nil || k.String() != name {
		return Key{}, false
	}
	return k, true
}

// openDir creates (if needed), probes and locks one data directory. Every
// error names the directory, since it is what an operator has to fix.
func openDir(path string) (*diskDir, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("dataserver: data dir %s cannot be created: %w", path, err)
	}
	if err := probeWritable(path); err != nil {
		return nil, err
	}
	lock, err := lockDir(path)
	if err != nil {
		return nil, err
	}
	d := &diskDir{path: path, shards: filepath.Join(path, shardsDir), lock: lock}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		d.unlock()
		return nil, fmt.Errorf("dataserver: data dir %s: stat: %w", path, err)
	}
	d.dev = st.Dev
	if err := d.makeShardsDir(); err != nil {
		d.unlock()
		return nil, err
	}
	return d, nil
}

// probeWritable creates, writes and removes a file: as root, permission
// bits say little, but a read-only mount or a broken disk shows here.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("dataserver: data dir %s is not writable: %w", dir, err)
	}
	_, err = f.Write([]byte("strata probe\n"))
	err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	if err != nil {
		return fmt.Errorf("dataserver: data dir %s is not writable: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive flock on <dir>/LOCK, so that two dataservers
// (or a restarted one while the old one lingers) never share a directory.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dataserver: data dir %s: open lock: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("dataserver: data dir %s is in use by another dataserver (%s is locked)", dir, p)
		}
		return nil, fmt.Errorf("dataserver: data dir %s: lock: %w", dir, err)
	}
	return f, nil
}

func (d *diskDir) unlock() {
	if d.lock != nil {
		d.lock.Close() // closing the descriptor releases the flock
		d.lock = nil
	}
}

// makeShardsDir creates <dir>/shards and makes its name durable.
func (d *diskDir) makeShardsDir() error {
	if _, err := os.Stat(d.shards); err == nil {
		return nil
	}
	if err := os.Mkdir(d.shards, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("dataserver: data dir %s: create %s: %w", d.path, d.shards, err)
	}
	if err := syncDir(d.path); err != nil {
		return fmt.Errorf("dataserver: data dir %s: %w", d.path, err)
	}
	return nil
}

// makeSubdir creates the sub-directory for k on its first use, and makes
// its name durable before a shard in it can be acknowledged. Created lazily
// because mkdir is slow on some disks and most are needed only once.
func (d *diskDir) makeSubdir(k Key) error {
	if err := os.Mkdir(d.subdir(k), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(d.shards)
}

// syncDir fsyncs a directory, making the names created in it durable.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dataserver: open dir for fsync: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dataserver: fsync dir %s: %w", path, err)
	}
	return nil
}

// found is a shard file met by a scan.
type found struct {
	size  int64
	mtime int64
}

// scan lists the shards of one directory and removes leftover temp files
// (writes cut short by a crash; never renamed, so never acknowledged).
// Files it does not recognise are left alone and logged.
func (d *diskDir) scan(ctx context.Context, log *slog.Logger) (map[Key]found, error) {
	subs, err := os.ReadDir(d.shards)
	if err != nil {
		return nil, fmt.Errorf("dataserver: data dir %s: scan: %w", d.path, err)
	}
	out := make(map[Key]found)
	temps := 0
	for _, sub := range subs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !sub.IsDir() || len(sub.Name()) != 2 {
			log.Warn("ignoring unexpected entry in shard directory", "path", filepath.Join(d.shards, sub.Name()))
			continue
		}
		ents, err := os.ReadDir(filepath.Join(d.shards, sub.Name()))
		if err != nil {
			return nil, fmt.Errorf("dataserver: data dir %s: scan: %w", d.path, err)
		}
		for _, e := range ents {
			n, err := d.scanEntry(e, sub.Name(), out, log)
			if err != nil {
				return nil, err
			}
			temps += n
		}
	}
	if temps > 0 {
		log.Info("removed leftover temp files", "dir", d.path, "count", temps)
	}
	return out, nil
}

// scanEntry records one directory entry; it returns 1 if it removed a
// temp file.
func (d *diskDir) scanEntry(e fs.DirEntry, sub string, out map[Key]found, log *slog.Logger) (int, error) {
	p := filepath.Join(d.shards, sub, e.Name())
	if strings.Contains(e.Name(), tempMarker) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("dataserver: data dir %s: remove temp file: %w", d.path, err)
		}
		return 1, nil
	}
	k, ok := parseShardName(e.Name())
	if !ok || !e.Type().IsRegular() || subdirOf(k) != sub {
		log.Warn("ignoring unexpected file in shard directory", "path", p)
		return 0, nil
	}
	info, err := e.Info()
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("dataserver: data dir %s: stat %s: %w", d.path, p, err)
	}
	out[k] = found{size: info.Size(), mtime: info.ModTime().UnixNano()}
	return 0, nil
}
