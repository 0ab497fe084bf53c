package fuse

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// handle is one open file. Writes are buffered in the node (shared by
// the handles of the file on this mount, see writeBuf); reads go through
// the handle's reader.
type handle struct {
	n      *node
	append bool
	rd     reader
	// flockOwner is the kernel's lock owner of a flock taken through this
	// handle (0: none), released when the handle is (see locks.go).
	flockOwner  atomic.Uint64
	lockMu      sync.Mutex
	posixOwners []uint64 // POSIX lock owners that locked through this handle
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

// Open starts close-to-open consistency: it asks the metadata service for
// the file's attributes (another mount may have written and closed it),
// and lets the kernel keep its cached pages only if size and mtime are
// those seen at the last open. When they differ from what the kernel was
// last told, its cached attributes are invalidated too, so that the size
// it reads up to is the new one.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if e := n.squashCheck(ctx, openWants(flags)); e != 0 {
		return nil, 0, e
	}
	// Count the open first: an unlink or rename-over racing with it must
	// see the file as open and rename it away rather than free it.
	n.mu.Lock()
	n.opens++
	known := n.shown
	n.mu.Unlock()
	n.forgetCaps()
	if n.m.opts.ReadOnly && known {
		// A read-only mount of an image, which never changes: the
		// attributes from lookup are good, and the kernel may keep every
		// page it has of the file (no open-time round trip).
		return n.newHandle(flags), gofuse.FOPEN_KEEP_CACHE, 0
	}
	a, err := n.openAttr(ctx, flags)
	if err != nil {
		n.mu.Lock()
		n.opens--
		if n.opens == 0 {
			n.reapSillyLocked(ctx)
		}
		n.mu.Unlock()
		return nil, 0, n.m.errno("open", n.ino(), err)
	}
	n.setChunkSize(a)
	n.mu.Lock()
	keep := n.opened && a.GetSize() == n.openSize && a.GetMtimeNs() == n.openMtime
	stale := n.shown && (a.GetSize() != n.shownSize || a.GetMtimeNs() != n.shownMtime)
	n.opened, n.openSize, n.openMtime = true, a.GetSize(), a.GetMtimeNs()
	n.size = max(a.GetSize(), n.wb.end(n.cs))
	n.mu.Unlock()
	if stale {
		// Attributes only (offset < 0); without FOPEN_KEEP_CACHE the
		// kernel drops the file's pages itself when the open completes.
		n.NotifyContent(-1, 0)
	}
	var fuseFlags uint32
	if keep {
		fuseFlags = gofuse.FOPEN_KEEP_CACHE
	}
	return n.newHandle(flags), fuseFlags, 0
}

// openAttr fetches the attributes of the file being opened, truncating it
// first for O_TRUNC.
func (n *node) openAttr(ctx context.Context, flags uint32) (*stratapb.Attr, error) {
	a, err := n.m.cl.GetAttr(ctx, n.ino())
	if err != nil || flags&syscall.O_TRUNC == 0 || a.GetSize() == 0 {
		return a, err
	}
	return n.setAttr(ctx, client.SetAttrIn{Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE)})
}

func (n *node) newHandle(flags uint32) *handle {
	return &handle{n: n, append: flags&syscall.O_APPEND != 0, rd: reader{n: n}}
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (gofuse.ReadResult, syscall.Errno) {
	ctx = uninterruptible(ctx)
	n := h.n
	n.mu.Lock()
	var err error
	if !n.wb.quiet() {
		// Reads see this mount's writes: send them first. (The kernel's
		// page cache usually answers such reads before they get here.)
		err = n.flushLocked(ctx)
	}
	n.mu.Unlock()
	if err != nil {
		return nil, n.m.fileErrno("read", n.ino(), err)
	}
	cnt, err := h.rd.read(ctx, dest, off)
	if err != nil {
		return nil, n.m.fileErrno("read", n.ino(), err)
	}
	return gofuse.ReadResultData(dest[:cnt]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if h.append {
		off = int64(n.size)
	}
	end := off + int64(len(data))
	if off < 0 || end > client.MaxFileSize {
		return 0, n.m.errno("write", n.ino(), fmt.Errorf("fuse: write up to byte %d: %w", end, syscall.EFBIG))
	}
	if n.cs <= 0 {
		return 0, n.m.errno("write", n.ino(), fmt.Errorf("fuse: write to inode %d: chunk size unknown: %w", n.ino(), syscall.EIO))
	}
	// go-fuse reuses data's buffer after Write returns; bufferWrite copies.
	if err := n.bufferWrite(ctx, data, off); err != nil {
		return 0, n.m.fileErrno("write", n.ino(), err)
	}
	n.size = max(n.size, uint64(end))
	return uint32(len(data)), 0
}

// Flush runs on every close(2) of a descriptor: everything buffered goes
// to Strata before close returns (close-to-open consistency).
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	rawCtx := ctx
	ctx = uninterruptible(ctx)
	if err := h.n.releasePosix(ctx, rawCtx); err != nil {
		return h.n.m.errno("flush", h.n.ino(), err)
	}
	return h.n.flush(ctx, "flush")
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	return h.n.flush(ctx, "fsync")
}

func (n *node) flush(ctx context.Context, op string) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.flushLocked(ctx); err != nil {
		return n.m.fileErrno(op, n.ino(), err)
	}
	return 0
}

// Release runs when the last descriptor of the handle is closed.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	ctx = uninterruptible(ctx)
	n := h.n
	if err := h.releaseLocks(ctx); err != nil {
		n.m.log.Warn("releasing locks on close; they go when the lease lapses", "ino", n.ino(), "err", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	h.rd.close()
	err := n.flushLocked(ctx)
	n.opens--
	if n.opens == 0 {
		n.reapSillyLocked(ctx)
	}
	if err != nil {
		return n.m.fileErrno("release", n.ino(), err)
	}
	return 0
}
