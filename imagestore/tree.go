package imagestore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// treeWriter writes the entries of a source below one Strata directory.
// Directories are made in the order entries come (a child needs its
// parent's inode); everything else is written by a pool of workers, since
// each file costs a few metadata round trips and those, not bandwidth,
// bound an import of small files. Directory attributes and hard links are
// applied at the end: creating children changes a directory's mtime, and a
// link needs its target written first.
type treeWriter struct {
	s    *Store
	ctx  context.Context
	root uint64

	dirs  map[string]uint64 // directory path -> inode
	final map[string]*Entry // directory path -> its own entry, if the source had one
	other map[string]Kind   // non-directory paths seen

	mu   sync.Mutex
	inos map[string]uint64 // non-directory path -> inode, for hard links

	links []*Entry
	pool  *pool
	stats importStats
}

// importStats are counted as the import goes, for the progress bar and
// the result.
type importStats struct {
	entries, files, bytes, stored atomic.Int64
}

func newTreeWriter(ctx context.Context, s *Store, root uint64, workers int) *treeWriter {
	return &treeWriter{
		s: s, ctx: ctx, root: root,
		dirs:  map[string]uint64{"": root},
		final: make(map[string]*Entry),
		other: make(map[string]Kind),
		inos:  make(map[string]uint64),
		pool:  newPool(ctx, workers),
	}
}

// add takes one entry from the source. It blocks only while directories
// are made or a streamed (large tarball) file is written.
func (w *treeWriter) add(src Source, e *Entry) error {
	if err := w.pool.err(); err != nil {
		return err
	}
	if _, dup := w.other[e.Path]; dup {
		return fmt.Errorf("%w: %q appears twice in the source", ErrBadSource, e.Path)
	}
	w.stats.entries.Add(1)
	if e.Kind == KindDir {
		if _, err := w.dir(e.Path); err != nil {
			return err
		}
		w.final[e.Path] = e
		return nil
	}
	if _, isDir := w.dirs[e.Path]; isDir {
		return fmt.Errorf("%w: %q appears twice in the source (as a directory and as a %s)", ErrBadSource, e.Path, e.Kind)
	}
	parent, err := w.dir(parentOf(e.Path))
	if err != nil {
		return err
	}
	w.other[e.Path] = e.Kind
	if e.Kind == KindHardlink {
		w.links = append(w.links, e)
		return nil
	}
	if e.Kind == KindRegular && e.Data == nil && !src.Detached() {
		return w.write(parent, e) // the data can only be read now
	}
	w.pool.Go(func() error { return w.write(parent, e) })
	return nil
}

// parentOf returns the directory part of a clean image path ("" for the
// root's children).
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// dir returns the inode of directory p, making it and its missing parents
// (root-owned, 0755 until the source's own entry says otherwise). A parent
// that is not a directory is refused: a tarball that puts "lib -> /usr/lib"
// and then "lib/x" would otherwise write through the link.
func (w *treeWriter) dir(p string) (uint64, error) {
	if ino, ok := w.dirs[p]; ok {
		return ino, nil
	}
	if k, ok := w.other[p]; ok {
		return 0, fmt.Errorf("%w: an entry is below %q, which is a %s (it would escape through it)", ErrBadSource, p, k)
	}
	parent, err := w.dir(parentOf(p))
	if err != nil {
		return 0, err
	}
	a, err := w.s.cl.MkdirAt(w.ctx, parent, path.Base(p), 0o755, rootOwner)
	if err != nil {
		return 0, fmt.Errorf("imagestore: make directory %q: %w", p, err)
	}
	w.dirs[p] = a.GetIno()
	return a.GetIno(), nil
}

// write makes one non-directory entry in parent.
func (w *treeWriter) write(parent uint64, e *Entry) error {
	ctx, name := w.ctx, path.Base(e.Path)
	owner := client.Owner{Uid: e.Uid, Gid: e.Gid}
	var a *stratapb.Attr
	var err error
	switch e.Kind {
	case KindRegular:
		a, err = w.writeFile(parent, name, owner, e)
	case KindSymlink:
		a, err = w.s.cl.SymlinkAt(ctx, parent, name, e.Link, owner)
	default:
		a, err = w.s.mknod(ctx, parent, name, e, owner)
	}
	if err != nil {
		return fmt.Errorf("imagestore: %s %q: %w", e.Kind, e.Path, err)
	}
	w.mu.Lock()
	w.inos[e.Path] = a.GetIno()
	w.mu.Unlock()
	if err := w.finish(a.GetIno(), e, e.Kind != KindSymlink); err != nil {
		return err
	}
	w.stats.files.Add(1)
	return nil
}

// writeFile creates a regular file and stores its data, deduplicated.
func (w *treeWriter) writeFile(parent uint64, name string, owner client.Owner, e *Entry) (*stratapb.Attr, error) {
	a, _, err := w.s.cl.CreateAt(w.ctx, parent, name, e.Mode, owner, client.CreateOptions{Exclusive: true})
	if err != nil {
		return nil, err
	}
	if e.Size == 0 {
		return a, nil
	}
	var r io.ReadCloser
	if e.Data != nil {
		r = io.NopCloser(bytes.NewReader(e.Data))
	} else if r, err = e.Open(); err != nil {
		return nil, err
	}
	defer r.Close()
	stored, err := w.s.writeData(w.ctx, a, r)
	if err != nil {
		return nil, err
	}
	w.stats.bytes.Add(e.Size)
	w.stats.stored.Add(stored)
	return a, nil
}

// finish sets what creation could not: extended attributes, then the
// mode (creation masks nothing, but a symlink has none to set), owner and
// times. The times go last: they mark the entry complete.
func (w *treeWriter) finish(ino uint64, e *Entry, withMode bool) error {
	for name, val := range e.Xattrs {
		if err := w.s.cl.SetXattr(w.ctx, ino, name, val, 0); err != nil {
			return fmt.Errorf("imagestore: %q: xattr %s: %w", e.Path, name, err)
		}
	}
	in := client.SetAttrIn{
		Valid: uint32(stratapb.SetAttrMask_SETATTR_UID | stratapb.SetAttrMask_SETATTR_GID |
			stratapb.SetAttrMask_SETATTR_ATIME | stratapb.SetAttrMask_SETATTR_MTIME),
		Uid: e.Uid, Gid: e.Gid, AtimeNs: e.MtimeNs, MtimeNs: e.MtimeNs,
	}
	if withMode {
		in.Valid |= uint32(stratapb.SetAttrMask_SETATTR_MODE)
		in.Mode = e.Mode
	}
	if _, err := w.s.cl.SetAttr(w.ctx, ino, in); err != nil {
		return fmt.Errorf("imagestore: %q: set attributes: %w", e.Path, err)
	}
	return nil
}

// complete waits for the workers, then makes the hard links and sets the
// directories' own attributes (in any order: no later step changes them).
func (w *treeWriter) complete() error {
	if err := w.pool.Wait(); err != nil {
		return err
	}
	for _, e := range w.links {
		if err := w.link(e); err != nil {
			return err
		}
	}
	p := newPool(w.ctx, cap(w.pool.slots))
	for dp, ino := range w.dirs {
		e := w.final[dp]
		if e == nil {
			e = &Entry{Path: dp, Kind: KindDir, Mode: 0o755}
		}
		p.Go(func() error { return w.finish(ino, e, true) })
	}
	return p.Wait()
}

func (w *treeWriter) link(e *Entry) error {
	ino, ok := w.inos[e.Link]
	if !ok {
		return fmt.Errorf("%w: hard link %q names %q, which is not an earlier file of the source", ErrBadSource, e.Path, e.Link)
	}
	parent := w.dirs[parentOf(e.Path)] // made when the link was added
	if _, err := w.s.cl.LinkAt(w.ctx, ino, parent, path.Base(e.Path)); err != nil {
		return fmt.Errorf("imagestore: hard link %q -> %q: %w", e.Path, e.Link, err)
	}
	w.inos[e.Path] = ino // a later link may name this one
	return nil
}

// pool runs functions on a bounded number of goroutines and keeps the
// first error; after one, the rest are skipped.
type pool struct {
	ctx   context.Context
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	first error
}

func newPool(ctx context.Context, n int) *pool {
	return &pool{ctx: ctx, slots: make(chan struct{}, max(n, 1))}
}

func (p *pool) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

func (p *pool) fail(err error) {
	p.mu.Lock()
	if p.first == nil {
		p.first = err
	}
	p.mu.Unlock()
}

func (p *pool) Go(fn func() error) {
	select {
	case p.slots <- struct{}{}:
	case <-p.ctx.Done():
		p.fail(p.ctx.Err())
		return
	}
	p.wg.Go(func() {
		defer func() { <-p.slots }()
		if p.err() != nil {
			return
		}
		if err := fn(); err != nil {
			p.fail(err)
		}
	})
}

func (p *pool) Wait() error {
	p.wg.Wait()
	return p.err()
}
