package imagestore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// treeWriter writes the entries of a source below one Strata directory in
// batches: the data of files is stored first (deduplicated, by a pool of
// workers, without touching any inode), then a committer makes the
// entries, in source order, many at a time in one metadata command each
// (ImportBatch: inode, attributes, xattrs and chunks together). An import
// of small files is bound by metadata commits, and this makes them one per
// batch instead of a few per file. Directories get their own attributes
// again at the end: creating children changes a directory's mtime.
type treeWriter struct {
	s       *Store
	ctx     context.Context
	cancel  context.CancelFunc
	staging uint64
	root    uint64
	anchor  *stratapb.Attr // a scratch file in the staging tree: chunk ids are allocated against it

	seen  map[string]Kind   // every path of the source so far
	final map[string]*Entry // directory path -> its own entry, if the source had one

	queue chan *planned // to the committer, in source order
	done  chan struct{} // closed when the committer returns
	cerr  atomic.Pointer[error]
	pool  *pool
	stats importStats

	// Small files are stored a group at a time (StoreSmall: one lookup
	// and one allocation per group); groups run on their own pool.
	group      []*planned
	groupBytes int64
	sinceGroup int // entries sent since the group's first file
	groups     *pool

	limits batchLimits
	// Contents stored by this import (contents.go).
	contents contentTable

	// The committer's own: paths made in earlier batches -> inode, and
	// the chunk each content was committed as.
	inos map[string]uint64
	regd map[string]uint64
}

// importStats are counted as the import goes, for the progress bar and
// the result.
type importStats struct {
	entries, files, bytes, stored atomic.Int64
}

// planned is one entry on its way to a batch. stored is closed once a
// regular file's data is stored (chunks, or err, set).
type planned struct {
	e      *Entry
	stored chan struct{}
	chunks []*stratapb.ChunkCommit
	size   int64
	err    error
}

const (
	// batchEntries and batchBytes bound one ImportBatch (the server
	// refuses more than 4096 entries or 4 MiB).
	batchEntries = 1024
	batchBytes   = 2 << 20
	// anchorName is the scratch file of an import, in its staging tree.
	anchorName = ".import-anchor"
	// Files up to groupFile bytes are stored in groups of up to
	// groupFiles files or groupBytes bytes, groupWorkers groups at once.
	// A group is also sent when groupSpan entries followed its first
	// file (the committer waits for that file).
	groupFile    = 1 << 20
	groupFiles   = 256
	groupBytes   = 8 << 20
	groupWorkers = 4
	groupSpan    = 512
)

// batchLimits are the sizes of batches and groups (smaller in tests, to
// cross their boundaries with small trees).
type batchLimits struct {
	batchEntries, groupFiles int
}

func newTreeWriter(ctx context.Context, s *Store, staging, root uint64, workers int, limits batchLimits) (*treeWriter, error) {
	anchor, _, err := s.cl.CreateAt(ctx, staging, anchorName, 0o600, rootOwner, client.CreateOptions{Exclusive: true})
	if err != nil {
		return nil, fmt.Errorf("imagestore: import scratch file: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &treeWriter{
		s: s, ctx: ctx, cancel: cancel, staging: staging, root: root, anchor: anchor,
		limits: batchLimits{batchEntries: cmp.Or(limits.batchEntries, batchEntries), groupFiles: cmp.Or(limits.groupFiles, groupFiles)},
		seen:   map[string]Kind{"": KindDir},
		final:  make(map[string]*Entry),
		queue:  make(chan *planned, 2*batchEntries),
		done:   make(chan struct{}),
		pool:   newPool(ctx, workers),
		groups: newPool(ctx, groupWorkers),
		inos:   map[string]uint64{"": root},
		regd:   map[string]uint64{},
	}
	go func() {
		defer close(w.done)
		if err := w.commitLoop(); err != nil {
			w.cerr.CompareAndSwap(nil, &err)
			w.cancel()
			for range w.queue { // let add return: it sees the error next
			}
		}
	}()
	return w, nil
}

// err is the failure of the workers or the committer: the cause rather
// than the cancellation it led to in the other.
func (w *treeWriter) err() error {
	var c error
	if p := w.cerr.Load(); p != nil {
		c = *p
	}
	errs := []error{c, w.pool.err(), w.groups.err()}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return cmp.Or(errs...)
}

// add takes one entry from the source. It blocks only while a streamed
// (large tarball) file is stored, or when the workers or the committer
// are behind.
func (w *treeWriter) add(src Source, e *Entry) error {
	if err := w.err(); err != nil {
		return err
	}
	if k, dup := w.seen[e.Path]; dup && (k != KindDir || e.Kind != KindDir) {
		return fmt.Errorf("%w: %q appears twice in the source (as a %s and as a %s)", ErrBadSource, e.Path, k, e.Kind)
	}
	w.stats.entries.Add(1)
	if err := w.dir(parentOf(e.Path)); err != nil {
		return err
	}
	if e.Kind == KindDir {
		w.final[e.Path] = e
		if _, made := w.seen[e.Path]; made || e.Path == "" {
			return nil // made already for a child (or the root): attributes at the end
		}
	}
	if e.Kind == KindHardlink {
		if k, ok := w.seen[e.Link]; !ok || k == KindDir {
			return fmt.Errorf("%w: hard link %q names %q, which is not an earlier file of the source", ErrBadSource, e.Path, e.Link)
		}
	}
	w.seen[e.Path] = e.Kind
	p := &planned{e: e}
	if e.Kind == KindRegular && e.Size > 0 {
		p.stored = make(chan struct{})
		if e.Size <= w.smallMax() && (e.Data != nil || src.Detached()) {
			return w.addSmall(p)
		}
		if e.Data == nil && !src.Detached() {
			if w.store(p); p.err != nil { // the data can only be read now
				return p.err
			}
		} else {
			w.pool.Go(func() error {
				if w.store(p); p.err != nil {
					w.cancel() // the committer waits for this file: stop it
				}
				return p.err
			})
		}
	}
	return w.send(p)
}

func (w *treeWriter) send(p *planned) error {
	if len(w.group) > 0 {
		if w.sinceGroup++; w.sinceGroup >= groupSpan {
			w.flushGroup()
		}
	}
	select {
	case w.queue <- p:
		return nil
	case <-w.ctx.Done():
		if err := w.err(); err != nil {
			return err
		}
		return w.ctx.Err()
	}
}

// smallMax is the largest file stored in a group: one chunk at most.
func (w *treeWriter) smallMax() int64 {
	return min(groupFile, int64(w.anchor.GetPolicy().GetChunkSize()))
}

// addSmall puts a small file in the current group, sending the group
// when it is full.
func (w *treeWriter) addSmall(p *planned) error {
	if len(w.group) == 0 {
		w.sinceGroup = 0
	}
	w.group = append(w.group, p)
	w.groupBytes += p.e.Size
	if len(w.group) >= w.limits.groupFiles || w.groupBytes >= groupBytes {
		w.flushGroup()
	}
	return w.send(p)
}

func (w *treeWriter) flushGroup() {
	g := w.group
	w.group, w.groupBytes = nil, 0
	if len(g) == 0 {
		return
	}
	w.groups.Go(func() error {
		err := w.storeGroup(g)
		if err != nil {
			w.cancel() // the committer waits for these files: stop it
		}
		return err
	})
}

// parentOf returns the directory part of a clean image path ("" for the
// root's children).
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// dir plans directory p and its missing parents (root-owned, 0755 until
// the source's own entry says otherwise). A parent that is not a
// directory is refused: a tarball that puts "lib -> /usr/lib" and then
// "lib/x" would otherwise write through the link.
func (w *treeWriter) dir(p string) error {
	if k, ok := w.seen[p]; ok {
		if k != KindDir {
			return fmt.Errorf("%w: an entry is below %q, which is a %s (it would escape through it)", ErrBadSource, p, k)
		}
		return nil
	}
	if err := w.dir(parentOf(p)); err != nil {
		return err
	}
	w.seen[p] = KindDir
	return w.send(&planned{e: &Entry{Path: p, Kind: KindDir, Mode: 0o755}})
}

// store stores a regular file's data (deduplicated) and records its
// chunks for the committer.
func (w *treeWriter) store(p *planned) {
	defer close(p.stored)
	var r io.ReadCloser
	if p.e.Data != nil {
		r = io.NopCloser(bytes.NewReader(p.e.Data))
	} else if r, p.err = p.e.Open(); p.err != nil {
		p.err = fmt.Errorf("imagestore: %s %q: %w", p.e.Kind, p.e.Path, p.err)
		return
	}
	defer r.Close()
	chunks, st, err := w.s.cl.StoreContent(w.ctx, w.anchor, r)
	if err != nil {
		p.err = fmt.Errorf("imagestore: %s %q: %w", p.e.Kind, p.e.Path, err)
		return
	}
	w.contents.wrote(chunks)
	p.chunks, p.size = chunks, st.Logical
	w.stats.bytes.Add(st.Logical)
	w.stats.stored.Add(st.Written)
}

// batch is the entries being gathered for one ImportBatch.
type batch struct {
	entries []*stratapb.ImportEntry
	paths   []string
	index   map[string]uint32 // path -> position+1 in entries
	bytes   int
}

func newBatch() *batch { return &batch{index: map[string]uint32{}} }

// commitLoop makes the planned entries in order, a batch at a time.
func (w *treeWriter) commitLoop() error {
	b := newBatch()
	for p := range w.queue {
		if p.stored != nil {
			select {
			case <-p.stored:
			case <-w.ctx.Done():
				return w.ctx.Err()
			}
			if p.err != nil {
				return p.err
			}
			w.settle(p.chunks)
		}
		ie, err := w.entryFor(p, b)
		if err != nil {
			return err
		}
		size := proto.Size(ie)
		if len(b.entries) >= w.limits.batchEntries || b.bytes+size > batchBytes && len(b.entries) > 0 {
			if err := w.flush(b); err != nil {
				return err
			}
			b = newBatch()
			if ie, err = w.entryFor(p, b); err != nil { // references are inodes now
				return err
			}
		}
		b.entries = append(b.entries, ie)
		b.paths = append(b.paths, p.e.Path)
		b.index[p.e.Path] = uint32(len(b.entries))
		b.bytes += size
		if p.e.Kind != KindDir {
			w.stats.files.Add(1)
		}
	}
	if w.ctx.Err() != nil {
		return w.ctx.Err()
	}
	return w.flush(b)
}

// flush makes the batch's entries and learns their inodes.
func (w *treeWriter) flush(b *batch) error {
	if len(b.entries) == 0 {
		return nil
	}
	inos, err := w.s.cl.ImportBatch(w.ctx, b.entries)
	if err != nil {
		return fmt.Errorf("imagestore: import %d entries (%q to %q): %w", len(b.entries), b.paths[0], b.paths[len(b.paths)-1], err)
	}
	for i, p := range b.paths {
		w.inos[p] = inos[i]
	}
	return nil
}

// entryFor describes a planned entry for a batch: names of entries in the
// same batch by position, of earlier ones by inode.
func (w *treeWriter) entryFor(p *planned, b *batch) (*stratapb.ImportEntry, error) {
	e := p.e
	ie := &stratapb.ImportEntry{
		Name: path.Base(e.Path), Mode: e.Mode, Uid: e.Uid, Gid: e.Gid, MtimeNs: e.MtimeNs, Xattrs: e.Xattrs,
	}
	if i, ok := b.index[parentOf(e.Path)]; ok {
		ie.ParentIndex = i
	} else {
		ie.Parent = w.inos[parentOf(e.Path)]
	}
	switch e.Kind {
	case KindDir:
		// e is the source's own entry when it came before the
		// directory's children, else a placeholder; the last batch sets
		// the attributes again either way (w.final is the adder's, not
		// to be read here).
		ie.Type = stratapb.FileType_DIRECTORY
	case KindRegular:
		ie.Type, ie.Size, ie.Chunks = stratapb.FileType_REGULAR, uint64(p.size), p.chunks
	case KindSymlink:
		ie.Type, ie.SymlinkTarget = stratapb.FileType_SYMLINK, e.Link
	case KindHardlink:
		ie.Mode, ie.Uid, ie.Gid, ie.MtimeNs, ie.Xattrs = 0, 0, 0, 0, nil
		if i, ok := b.index[e.Link]; ok {
			ie.LinkIndex = i
		} else if ino, ok := w.inos[e.Link]; ok {
			ie.LinkIno = ino
		} else {
			return nil, fmt.Errorf("%w: hard link %q names %q, which is not an earlier file of the source", ErrBadSource, e.Path, e.Link)
		}
	default:
		typ, err := fileType(e.Kind)
		if err != nil {
			return nil, err
		}
		ie.Type, ie.Rdev = typ, uint32(unix.Mkdev(e.DevMajor, e.DevMinor))
	}
	return ie, nil
}

// complete waits for the workers and the committer, sets the
// directories' own attributes (in batches: no later step changes them)
// and removes the scratch file.
func (w *treeWriter) complete() error {
	w.flushGroup()
	poolErr := errors.Join(w.pool.Wait(), w.groups.Wait())
	close(w.queue)
	<-w.done
	if err := w.err(); err != nil {
		return err
	}
	if poolErr != nil {
		return poolErr
	}
	b := newBatch()
	for dp, ino := range w.inos {
		if w.seen[dp] != KindDir {
			continue
		}
		e := w.final[dp]
		if e == nil {
			e = &Entry{Path: dp, Kind: KindDir, Mode: 0o755}
		}
		b.entries = append(b.entries, &stratapb.ImportEntry{SetAttrIno: ino, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid, MtimeNs: e.MtimeNs, Xattrs: e.Xattrs})
		b.paths = append(b.paths, dp)
		if len(b.entries) >= w.limits.batchEntries {
			if err := w.flush(b); err != nil {
				return err
			}
			b = newBatch()
		}
	}
	if err := w.flush(b); err != nil {
		return err
	}
	if err := w.s.cl.UnlinkAt(w.ctx, w.staging, anchorName); err != nil {
		return fmt.Errorf("imagestore: remove the import scratch file: %w", err)
	}
	return nil
}

// abort stops the committer after a failure of the source, once the
// running workers are done.
func (w *treeWriter) abort() {
	w.cancel()
	w.pool.Wait()
	w.groups.Wait()
	close(w.queue)
	<-w.done
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
