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

// node is one Strata inode the kernel knows. go-fuse keeps one node per
// inode number (StableAttr.Ino), so hard links share a node, and with it
// the write buffer and the open count.
type node struct {
	fs.Inode
	m *FS

	mu sync.Mutex
	// cs is the chunk size of a regular file, fixed when it was created.
	cs int64
	// size is the file size as this mount knows it: the server's at the
	// last look, grown by buffered writes. O_APPEND writes go there.
	size uint64
	// wb holds written data not yet sent to Strata.
	wb writeBuf
	// opens counts open handles; silly is the hidden name the file was
	// renamed to when unlinked while open (in directory sillyDir), "" if
	// it was not. See silly.go.
	opens    int
	silly    string
	sillyDir uint64
	// shown* are the size and mtime last given to the kernel, open* those
	// seen at the last open; they decide, on open, whether the kernel's
	// cached attributes and pages are still good (see Open).
	shownSize, openSize   uint64
	shownMtime, openMtime int64
	shown, opened         bool
	// ahead is a directory's statahead listing (statahead.go).
	ahead *statahead
	// caps caches the security.capability xattr (xcap.go).
	caps capsCache
	// gen counts changes this mount made to the file's data (writes sent,
	// truncates): a handle's readahead drops chunks fetched before one.
	gen atomic.Uint64
	// fattr is the attributes of an inode of a frozen tree on a read-only
	// mount (nil otherwise): they never change, so they answer getattr
	// and readlink. kids is a listed frozen directory's children by name
	// (see imagecache.go).
	fattr *stratapb.Attr
	kids  map[string]*stratapb.Attr
}

var (
	_ fs.InodeEmbedder     = (*node)(nil)
	_ fs.NodeLookuper      = (*node)(nil)
	_ fs.NodeGetattrer     = (*node)(nil)
	_ fs.NodeSetattrer     = (*node)(nil)
	_ fs.NodeMkdirer       = (*node)(nil)
	_ fs.NodeCreater       = (*node)(nil)
	_ fs.NodeOpener        = (*node)(nil)
	_ fs.NodeUnlinker      = (*node)(nil)
	_ fs.NodeRmdirer       = (*node)(nil)
	_ fs.NodeRenamer       = (*node)(nil)
	_ fs.NodeSymlinker     = (*node)(nil)
	_ fs.NodeMknoder       = (*node)(nil)
	_ fs.NodeReadlinker    = (*node)(nil)
	_ fs.NodeLinker        = (*node)(nil)
	_ fs.NodeReaddirer     = (*node)(nil)
	_ fs.NodeStatfser      = (*node)(nil)
	_ fs.NodeFsyncer       = (*node)(nil)
	_ fs.NodeGetxattrer    = (*node)(nil)
	_ fs.NodeSetxattrer    = (*node)(nil)
	_ fs.NodeListxattrer   = (*node)(nil)
	_ fs.NodeRemovexattrer = (*node)(nil)
)

func (n *node) ino() uint64 { return n.StableAttr().Ino }

func typeMode(t stratapb.FileType) uint32 {
	switch t {
	case stratapb.FileType_DIRECTORY:
		return syscall.S_IFDIR
	case stratapb.FileType_SYMLINK:
		return syscall.S_IFLNK
	case stratapb.FileType_CHARDEV:
		return syscall.S_IFCHR
	case stratapb.FileType_BLOCKDEV:
		return syscall.S_IFBLK
	case stratapb.FileType_FIFO:
		return syscall.S_IFIFO
	case stratapb.FileType_SOCKET:
		return syscall.S_IFSOCK
	default:
		return syscall.S_IFREG
	}
}

// setChunkSize records the chunk size of a regular file.
func (n *node) setChunkSize(a *stratapb.Attr) {
	if cs := int64(a.GetPolicy().GetChunkSize()); cs > 0 && a.GetType() == stratapb.FileType_REGULAR {
		n.mu.Lock()
		n.cs = cs
		n.mu.Unlock()
	}
}

// child returns the node of the inode a describes, creating it when the
// kernel does not know it yet, and fills out with its attributes.
func (n *node) child(ctx context.Context, a *stratapb.Attr, out *gofuse.EntryOut) *fs.Inode {
	id := fs.StableAttr{Mode: typeMode(a.GetType()), Ino: a.GetIno(), Gen: 1}
	ch := n.NewInode(ctx, &node{m: n.m}, id)
	cn := ch.Operations().(*node)
	cn.setChunkSize(a)
	cn.fillAttr(a, &out.Attr)
	return ch
}

// fillAttr converts a to the kernel's form. The size includes data
// buffered here and not yet sent, so that the kernel, refreshing its
// attributes, does not cut off what a program just wrote.
func (n *node) fillAttr(a *stratapb.Attr, out *gofuse.Attr) {
	n.mu.Lock()
	size := max(a.GetSize(), n.wb.end(n.cs))
	if n.cs > 0 {
		n.size = size
	}
	nlink := a.GetNlink()
	if n.silly != "" && nlink > 0 {
		nlink-- // the hidden name is not a link the program knows of
	}
	n.shownSize, n.shownMtime, n.shown = a.GetSize(), a.GetMtimeNs(), true
	if a.GetFrozen() && n.m.frozen != nil {
		n.fattr = a
	}
	n.mu.Unlock()

	out.Ino = a.GetIno()
	out.Size = size
	out.Blocks = (size + 511) / 512
	out.Blksize = maxIO
	out.Mode = typeMode(a.GetType()) | a.GetMode()&0o7777
	out.Nlink = nlink
	out.Rdev = a.GetRdev()
	out.Uid, out.Gid = a.GetUid(), a.GetGid()
	setTime(&out.Atime, &out.Atimensec, a.GetAtimeNs())
	setTime(&out.Mtime, &out.Mtimensec, a.GetMtimeNs())
	setTime(&out.Ctime, &out.Ctimensec, a.GetCtimeNs())
}

func setTime(sec *uint64, nsec *uint32, ns int64) {
	if ns < 0 {
		ns = 0
	}
	*sec, *nsec = uint64(ns/1e9), uint32(ns%1e9)
}

func (n *node) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if e := n.squashCheck(ctx, mayExec); e != 0 {
		return nil, e
	}
	if a, known := n.frozenKid(name); known {
		if a == nil {
			return nil, syscall.ENOENT
		}
		return n.child(ctx, a, out), 0
	}
	if a, age, ok := n.aheadLookup(name); ok {
		ch := n.child(ctx, a, out)
		n.setAheadTimeouts(out, age)
		return ch, 0
	}
	a, err := n.m.cl.Lookup(ctx, n.ino(), name)
	if err != nil {
		return nil, n.m.errno("lookup", n.ino(), err)
	}
	return n.child(ctx, a, out), 0
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *gofuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	if e := n.squashCheck(ctx, 0); e != 0 && f == nil {
		return e
	}
	n.mu.Lock()
	fa := n.fattr
	n.mu.Unlock()
	if fa != nil {
		n.fillAttr(fa, &out.Attr)
		return 0
	}
	a, err := n.m.cl.GetAttr(ctx, n.ino())
	if err != nil {
		return n.m.fileErrno("getattr", n.ino(), err)
	}
	n.fillAttr(a, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	defer n.forgetCaps() // a chown drops file capabilities
	if e := n.squashSetattr(ctx, in); e != 0 {
		return e
	}
	a, err := n.setAttr(ctx, setAttrIn(in))
	if err != nil {
		return n.m.fileErrno("setattr", n.ino(), err)
	}
	n.fillAttr(a, &out.Attr)
	return 0
}

func (n *node) setAttr(ctx context.Context, sa client.SetAttrIn) (*stratapb.Attr, error) {
	switch {
	case sa.Valid == 0: // only ctime, a lock owner or a handle
		return n.m.cl.GetAttr(ctx, n.ino())
	case sa.Valid&uint32(stratapb.SetAttrMask_SETATTR_SIZE) == 0:
		return n.m.cl.SetAttr(ctx, n.ino(), sa)
	case sa.Size > client.MaxFileSize:
		return nil, fmt.Errorf("fuse: truncate to %d bytes: %w", sa.Size, syscall.EFBIG)
	}
	// Buffered writes go first, and no write may slip in between: the
	// truncate must cut them too.
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.flushLocked(ctx); err != nil {
		return nil, err
	}
	a, err := n.m.cl.SetAttr(ctx, n.ino(), sa)
	n.gen.Add(1)
	if err == nil {
		n.size = a.GetSize()
	}
	return a, err
}

// setAttrIn translates the kernel's setattr into the client's.
func setAttrIn(in *gofuse.SetAttrIn) client.SetAttrIn {
	var sa client.SetAttrIn
	set := func(bit stratapb.SetAttrMask) { sa.Valid |= uint32(bit) }
	if v, ok := in.GetMode(); ok {
		sa.Mode = v
		set(stratapb.SetAttrMask_SETATTR_MODE)
	}
	if v, ok := in.GetUID(); ok {
		sa.Uid = v
		set(stratapb.SetAttrMask_SETATTR_UID)
	}
	if v, ok := in.GetGID(); ok {
		sa.Gid = v
		set(stratapb.SetAttrMask_SETATTR_GID)
	}
	if v, ok := in.GetSize(); ok {
		sa.Size = v
		set(stratapb.SetAttrMask_SETATTR_SIZE)
	}
	if t, ok := in.GetATime(); ok {
		sa.AtimeNs = t.UnixNano()
		set(stratapb.SetAttrMask_SETATTR_ATIME)
	}
	if t, ok := in.GetMTime(); ok {
		sa.MtimeNs = t.UnixNano()
		set(stratapb.SetAttrMask_SETATTR_MTIME)
	}
	return sa
}

// Fsync on a node without a handle (a directory): metadata changes are
// durable in the Raft log once acknowledged, so there is nothing to do.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	if h, ok := f.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}
