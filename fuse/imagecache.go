package fuse

import (
	"context"
	"io"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Frozen trees (images) never change, so a mount may keep whatever it
// learns of them and ask for nothing twice:
//
//   - a frozen directory is listed once, with its children's attributes
//     (one call); lookups below it, found or not, are answered from that
//     listing, and the kernel is told to cache the listing itself
//     (FOPEN_CACHE_DIR) so that a second readdir never reaches us;
//   - a frozen file's chunk list is fetched once and kept (reads cost no
//     metadata call);
//   - when a frozen directory is listed, the chunk lists of its files, and
//     the data of its small files, are fetched ahead in parallel into the
//     node's chunk cache: a program that reads every file of the tree (a
//     boot) then finds them there instead of paying a few round trips per
//     file in turn.
//
// The mutable part of a mount is untouched: nothing here applies to an
// inode whose attributes do not say frozen.

const (
	// prefetchWorkers bounds the fetches ahead running at once.
	prefetchWorkers = 8
	// prefetchQueue bounds the files waiting for a fetch ahead; beyond it
	// they are skipped (their reader fetches them itself).
	prefetchQueue = 4096
	// prefetchDataMax: files up to this size have their data fetched
	// ahead (whole chunks, so that the chunk cache keeps them); larger
	// ones only their chunk list, the reader's readahead does the rest.
	prefetchDataMax = 1 << 20
	// maxLayouts bounds the chunk lists kept (forgotten all at once when
	// full, then fetched again on demand).
	maxLayouts = 1 << 17
)

// frozenCache is what a mount keeps of frozen files.
type frozenCache struct {
	cl     *client.Client
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan uint64 // inodes to fetch ahead
	once   sync.Once

	mu       sync.Mutex
	layouts  map[uint64]*client.FileLayout
	queued   map[uint64]bool          // waiting for a worker
	inflight map[uint64]chan struct{} // fetches ahead running, by inode
}

func newFrozenCache(cl *client.Client) *frozenCache {
	ctx, cancel := context.WithCancel(context.Background())
	return &frozenCache{
		cl: cl, ctx: ctx, cancel: cancel, queue: make(chan uint64, prefetchQueue),
		layouts: make(map[uint64]*client.FileLayout), queued: make(map[uint64]bool),
		inflight: make(map[uint64]chan struct{}),
	}
}

// close stops the fetches ahead (at unmount).
func (fc *frozenCache) close() { fc.cancel() }

func (fc *frozenCache) layout(ino uint64) *client.FileLayout {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.layouts[ino]
}

func (fc *frozenCache) keep(ino uint64, l *client.FileLayout) {
	if !l.Frozen() {
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.layouts) >= maxLayouts {
		fc.layouts = make(map[uint64]*client.FileLayout)
	}
	fc.layouts[ino] = l
}

// wait returns once no fetch ahead of ino is running (a reader arriving
// while its file is being fetched ahead waits rather than fetching it a
// second time; one still queued is not waited for: the queue may be long).
func (fc *frozenCache) wait(ctx context.Context, ino uint64) {
	fc.mu.Lock()
	ch := fc.inflight[ino]
	fc.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// readAt reads a frozen file through its kept chunk list, fetching the
// list first if needed. A read through a kept list that fails (a
// dataserver that moved, say) is retried once with a fresh list.
func (fc *frozenCache) readAt(ctx context.Context, ino uint64, p []byte, off int64) (int, error) {
	fc.wait(ctx, ino)
	l := fc.layout(ino)
	if l != nil {
		n, err := fc.cl.ReadAtLayout(ctx, l, p, off)
		if err == nil || err == io.EOF || ctx.Err() != nil {
			return n, err
		}
	}
	l, err := fc.cl.Layout(ctx, ino)
	if err != nil {
		return 0, err
	}
	fc.keep(ino, l)
	return fc.cl.ReadAtLayout(ctx, l, p, off)
}

// prefetch queues the regular files of a frozen directory listing for a
// fetch ahead, starting the workers on first use.
func (fc *frozenCache) prefetch(entries []*stratapb.DirEntry) {
	fc.once.Do(func() {
		for range prefetchWorkers {
			go fc.work()
		}
	})
	for _, e := range entries {
		a := e.GetAttr()
		if a.GetType() != stratapb.FileType_REGULAR || !a.GetFrozen() || fc.layout(a.GetIno()) != nil {
			continue
		}
		fc.mu.Lock()
		_, busy := fc.inflight[a.GetIno()]
		busy = busy || fc.queued[a.GetIno()]
		if !busy {
			fc.queued[a.GetIno()] = true
		}
		fc.mu.Unlock()
		if busy {
			continue
		}
		select {
		case fc.queue <- a.GetIno():
		default: // queue full: the reader fetches it itself
			fc.mu.Lock()
			delete(fc.queued, a.GetIno())
			fc.mu.Unlock()
		}
	}
}

// start marks the fetch ahead of ino running, unless a reader fetched
// its chunk list meanwhile (then there is nothing left to fetch ahead).
func (fc *frozenCache) start(ino uint64) bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	delete(fc.queued, ino)
	if fc.layouts[ino] != nil {
		return false
	}
	fc.inflight[ino] = make(chan struct{})
	return true
}

func (fc *frozenCache) done(ino uint64) {
	fc.mu.Lock()
	ch := fc.inflight[ino]
	delete(fc.inflight, ino)
	fc.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

func (fc *frozenCache) work() {
	for {
		select {
		case <-fc.ctx.Done():
			return
		case ino := <-fc.queue:
			if fc.start(ino) {
				fc.fetchAhead(ino)
				fc.done(ino)
			}
		}
	}
}

// fetchAhead fetches the chunk list of ino and, for a small file, its
// data (into the chunk cache, which keeps whole chunks read). Errors are
// dropped: the reader, if one comes, fetches again and reports them.
func (fc *frozenCache) fetchAhead(ino uint64) {
	l, err := fc.cl.Layout(fc.ctx, ino)
	if err != nil {
		return
	}
	fc.keep(ino, l)
	if l.Size() == 0 || l.Size() > prefetchDataMax || !fc.cl.HasChunkCache() {
		return
	}
	buf := make([]byte, l.Size())
	fc.cl.ReadAtLayout(fc.ctx, l, buf, 0)
}

// frozenKid answers lookups in a frozen directory from its listing.
// known is false when the directory has not been listed (or is not
// frozen); then a is nil and the caller asks the metadata service.
func (n *node) frozenKid(name string) (a *stratapb.Attr, known bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kids == nil {
		return nil, false
	}
	return n.kids[name], true
}

// readdirFrozen lists a frozen directory with its children's attributes,
// keeps them for lookups and starts the fetches ahead of its files.
func (n *node) readdirFrozen(ctx context.Context) ([]*stratapb.DirEntry, error) {
	entries, err := n.m.cl.ReadDirAt(ctx, n.ino(), true)
	if err != nil {
		return nil, err
	}
	kids := make(map[string]*stratapb.Attr, len(entries))
	for _, e := range entries {
		if e.GetAttr() != nil {
			kids[e.GetName()] = e.GetAttr()
		}
	}
	n.mu.Lock()
	n.kids = kids
	n.mu.Unlock()
	if n.m.frozen != nil {
		n.m.frozen.prefetch(entries)
	}
	return entries, nil
}

// isFrozen reports whether the node's inode lies in a frozen tree, as its
// attributes last said.
func (n *node) isFrozen() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fattr != nil
}

// dirHandle is an open directory: the listing is read on first use (as
// go-fuse does for a node without a handle of its own). A frozen
// directory's listing may be kept by the kernel (FOPEN_CACHE_DIR).
type dirHandle struct {
	n  *node
	ds fs.DirStream
}

var (
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
	_ fs.FileSeekdirer      = (*dirHandle)(nil)
	_ fs.FileReleasedirer   = (*dirHandle)(nil)
)

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	var fuseFlags uint32
	if n.isFrozen() {
		fuseFlags = gofuse.FOPEN_CACHE_DIR | gofuse.FOPEN_KEEP_CACHE
	}
	return &dirHandle{n: n}, fuseFlags, 0
}

func (d *dirHandle) open(ctx context.Context) syscall.Errno {
	if d.ds != nil {
		return 0
	}
	ds, errno := d.n.Readdir(ctx)
	if errno == 0 {
		d.ds = ds
	}
	return errno
}

func (d *dirHandle) Readdirent(ctx context.Context) (*gofuse.DirEntry, syscall.Errno) {
	if errno := d.open(ctx); errno != 0 {
		return nil, errno
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.open(ctx); errno != 0 {
		return errno
	}
	if sd, ok := d.ds.(fs.FileSeekdirer); ok {
		return sd.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if d.ds != nil {
		d.ds.Close()
	}
}
