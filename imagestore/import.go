package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/client"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Progress receives a progress bar (a terminal); nil for none.
	Progress io.Writer
	// Workers is how many files are written at once (default 32).
	Workers int
	// limits: zero for the defaults; tests make them small.
	limits batchLimits
}

// defaultWorkers is how many entries an import writes at once. Small files
// cost raft commits, not bandwidth, and raft commits concurrent entries
// together: 64 imported a Debian tree 40% faster than 16 here; 32 keeps the
// buffered tarball members and chunk buffers in flight near 200 MiB.
const defaultWorkers = 32

// ImportResult says what an import did.
type ImportResult struct {
	Ref     Ref
	Entries int64 // entries of the source
	Bytes   int64 // bytes of file data
	Stored  int64 // bytes of new chunks written (the rest was stored already)
	Elapsed time.Duration
	// Resumed: an earlier run had built the whole image and was cut off
	// while publishing it; this run only finished the publication.
	Resumed bool
	// Digest is the sha256 of a tarball source; SameAs names the image
	// made from the same tarball whose tree this one shares (a clone: no
	// data written, one metadata command).
	Digest, SameAs string
}

// xattrRecord is the extended attribute of an image's directory that
// holds its Record (JSON).
const xattrRecord = "user.strata.image"

// Record is what the store remembers of an import.
type Record struct {
	Source  string    `json:"source"`
	Digest  string    `json:"digest,omitempty"` // sha256 of a tarball
	Created time.Time `json:"created"`
	Entries int64     `json:"entries"`
	Bytes   int64     `json:"bytes"`
}

// OpenSource opens a tarball or a directory, whichever path names.
func OpenSource(path string) (Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("imagestore: source: %w", err)
	}
	if st.IsDir() {
		return OpenDir(path)
	}
	return OpenTar(path)
}

// Import makes image r from src. It fails with ErrExists if r exists. The
// tree is built in a staging directory and appears under its name only
// once complete (rename, then freeze). Re-running an import that was
// interrupted redoes it from a clean staging tree; one cut off between
// the rename and the freeze is finished.
func (s *Store) Import(ctx context.Context, r Ref, src Source, opts ImportOptions) (*ImportResult, error) {
	start := time.Now()
	res := &ImportResult{Ref: r}
	if done, err := s.finishPublished(ctx, r); err != nil || done {
		res.Resumed = done
		return res, err
	}
	staging, err := s.freshStaging(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := s.buildTree(ctx, staging, src, opts, res); err != nil {
		s.dropStaging(ctx, r)
		return nil, fmt.Errorf("imagestore: import %s from %s: %w", r, src.Describe(), err)
	}
	if err := s.writeRecord(ctx, staging, src, res); err != nil {
		s.dropStaging(ctx, r)
		return nil, err
	}
	if err := s.publish(ctx, r); err != nil {
		if !errors.Is(err, errPublished) {
			s.dropStaging(ctx, r)
		}
		return nil, err
	}
	res.Elapsed = time.Since(start)
	s.log.Info("imported", "image", r, "entries", res.Entries, "bytes", res.Bytes, "stored", res.Stored, "elapsed", res.Elapsed)
	return res, nil
}

// buildTree makes the image's rootfs in the staging directory: a clone of
// an image imported from the very same tarball (same sha256), or written
// entry by entry from src.
func (s *Store) buildTree(ctx context.Context, staging uint64, src Source, opts ImportOptions, res *ImportResult) error {
	if d, ok := src.(digester); ok {
		digest, err := d.Digest()
		if err != nil {
			return err
		}
		res.Digest = digest
		twin, err := s.findDigest(ctx, digest)
		if err != nil || twin != nil {
			return s.cloneTwin(ctx, staging, twin, res, err)
		}
	}
	rootfs, err := s.cl.MkdirAt(ctx, staging, rootfsName, 0o755, rootOwner)
	if err != nil {
		return err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = defaultWorkers
	}
	w, err := newTreeWriter(ctx, s, staging, rootfs.GetIno(), workers, opts.limits)
	if err != nil {
		return err
	}
	bar := startProgress(opts.Progress, src, &w.stats)
	err = copyTree(src, w)
	bar.Stop()
	res.Entries, res.Bytes, res.Stored = w.stats.entries.Load(), w.stats.bytes.Load(), w.stats.stored.Load()
	return err
}

// digester is a source that can name its content (a tarball: the sha256
// of the file), so that importing the same content again can share the
// existing tree, as registries share layers by digest.
type digester interface {
	Digest() (string, error)
}

// findDigest returns a complete image imported from content with this
// digest, or nil.
func (s *Store) findDigest(ctx context.Context, digest string) (*Image, error) {
	imgs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range imgs {
		if imgs[i].Complete && imgs[i].Record.Digest == digest {
			return &imgs[i], nil
		}
	}
	return nil, nil
}

// cloneTwin makes the staging rootfs a clone of twin's (one metadata
// command: new inodes, the same chunks).
func (s *Store) cloneTwin(ctx context.Context, staging uint64, twin *Image, res *ImportResult, err error) error {
	if err != nil {
		return err
	}
	root, err := s.cl.Lookup(ctx, twin.Ino, rootfsName)
	if err != nil {
		return err
	}
	if _, err := s.cl.CloneTree(ctx, root.GetIno(), staging, rootfsName, false); err != nil {
		return err
	}
	res.Entries, res.Bytes, res.SameAs = twin.Record.Entries, twin.Record.Bytes, twin.Ref.String()
	return nil
}

// copyTree feeds every entry of src to w and waits until all is written.
func copyTree(src Source, w *treeWriter) error {
	for {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			err = w.add(src, e)
		}
		if err != nil {
			w.abort() // let running writes end before the caller cleans up
			return err
		}
	}
	return w.complete()
}

// finishPublished handles an existing image of that name: a frozen one is
// an error; one that an interrupted run renamed but did not freeze is
// frozen now (its tree was complete before the rename).
func (s *Store) finishPublished(ctx context.Context, r Ref) (bool, error) {
	a, err := s.lstat(ctx, imagePath(r))
	if err != nil || a == nil {
		return false, err
	}
	if a.GetFrozen() {
		return false, fmt.Errorf("%w: image %s (remove it first, or import under a new tag)", ErrExists, r)
	}
	if err := s.freeze(ctx, a.GetIno()); err != nil {
		return false, fmt.Errorf("imagestore: finish publishing %s: %w", r, err)
	}
	s.log.Info("finished publishing an interrupted import", "image", r)
	return true, nil
}

// freshStaging returns the inode of an empty staging directory for r,
// removing what an interrupted earlier run left there.
func (s *Store) freshStaging(ctx context.Context, r Ref) (uint64, error) {
	st, err := s.ensureDir(ctx, StagingDir)
	if err != nil {
		return 0, err
	}
	name := stagingName(r)
	if err := s.removeTree(ctx, st.GetIno(), name); err != nil && !errors.Is(err, syscall.ENOENT) {
		return 0, fmt.Errorf("imagestore: clear the staging tree of %s: %w", r, err)
	}
	a, err := s.cl.MkdirAt(ctx, st.GetIno(), name, 0o755, rootOwner)
	if err != nil {
		return 0, fmt.Errorf("imagestore: staging tree of %s: %w", r, err)
	}
	return a.GetIno(), nil
}

func (s *Store) writeRecord(ctx context.Context, dir uint64, src Source, res *ImportResult) error {
	rec := Record{Source: src.Describe(), Digest: res.Digest, Created: time.Now().UTC().Truncate(time.Second), Entries: res.Entries, Bytes: res.Bytes}
	b, err := json.Marshal(rec)
	if err == nil {
		err = s.cl.SetXattr(ctx, dir, xattrRecord, b, 0)
	}
	if err != nil {
		return fmt.Errorf("imagestore: record of %s: %w", res.Ref, err)
	}
	return nil
}

// dropStaging removes the staging tree of a failed import, even when the
// failure was ctx ending (an interrupt); if that fails too, the next run
// removes it.
func (s *Store) dropStaging(ctx context.Context, r Ref) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st, err := s.lstat(ctx, StagingDir)
	if err == nil && st != nil {
		err = s.removeTree(ctx, st.GetIno(), stagingName(r))
	}
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		s.log.Warn("could not remove the staging tree of a failed import; the next import removes it", "image", r, "err", err)
	}
}

// errPublished marks a failure after the rename: the complete tree is
// under the image's name, unfrozen, and the next run of the import
// freezes it.
var errPublished = errors.New("imagestore: published but not frozen (re-run the import to finish)")

// publish renames the staging tree to the image's name (never replacing
// one: a concurrent import of the same name loses with ErrExists) and
// freezes it.
func (s *Store) publish(ctx context.Context, r Ref) error {
	st, err := s.cl.Lstat(ctx, StagingDir)
	if err != nil {
		return fmt.Errorf("imagestore: publish %s: %w", r, err)
	}
	dir, err := s.ensureDir(ctx, ImagesDir+"/"+r.Name)
	if err != nil {
		return err
	}
	err = s.cl.RenameAt(ctx, st.GetIno(), stagingName(r), dir.GetIno(), r.Tag, client.RenameNoReplace)
	if errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("%w: image %s (imported meanwhile by someone else)", ErrExists, r)
	}
	if err != nil {
		return fmt.Errorf("imagestore: publish %s: %w", r, err)
	}
	a, err := s.cl.Lookup(ctx, dir.GetIno(), r.Tag)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errPublished, r, err)
	}
	if err := s.freeze(ctx, a.GetIno()); err != nil {
		return fmt.Errorf("%w: freeze %s: %w", errPublished, r, err)
	}
	return nil
}
