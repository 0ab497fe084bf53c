package fuse

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Modes arrive from the kernel with the caller's umask already applied
// (go-fuse does not ask for FUSE_DONT_MASK), so they are stored as given:
// applying this daemon's umask again would be wrong.

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return nil, e
	}
	a, err := n.m.cl.MkdirAt(ctx, n.ino(), name, mode&0o7777, n.m.owner(ctx))
	if err != nil {
		return nil, n.m.errno("mkdir", n.ino(), err)
	}
	return n.child(ctx, a, out), 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *gofuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return nil, nil, 0, e
	}
	opts := client.CreateOptions{
		Exclusive: flags&syscall.O_EXCL != 0,
		Truncate:  flags&syscall.O_TRUNC != 0,
	}
	a, _, err := n.m.cl.CreateAt(ctx, n.ino(), name, mode&0o7777, n.m.owner(ctx), opts)
	if err != nil {
		return nil, nil, 0, n.m.errno("create", n.ino(), err)
	}
	ch := n.child(ctx, a, out)
	cn := ch.Operations().(*node)
	cn.mu.Lock()
	cn.opened, cn.openSize, cn.openMtime = true, a.GetSize(), a.GetMtimeNs()
	cn.opens++
	cn.mu.Unlock()
	return ch, cn.newHandle(flags), 0, 0
}

// Mknod makes device nodes, FIFOs and sockets (an overlayfs whiteout is a
// character device 0/0). Regular files come through Create.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return nil, e
	}
	var typ stratapb.FileType
	switch mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		typ = stratapb.FileType_CHARDEV
	case syscall.S_IFBLK:
		typ = stratapb.FileType_BLOCKDEV
	case syscall.S_IFIFO:
		typ, dev = stratapb.FileType_FIFO, 0
	case syscall.S_IFSOCK:
		typ, dev = stratapb.FileType_SOCKET, 0
	case syscall.S_IFREG, 0:
		a, _, err := n.m.cl.CreateAt(ctx, n.ino(), name, mode&0o7777, n.m.owner(ctx), client.CreateOptions{Exclusive: true})
		if err != nil {
			return nil, n.m.errno("mknod", n.ino(), err)
		}
		return n.child(ctx, a, out), 0
	default:
		return nil, syscall.EINVAL
	}
	a, err := n.m.cl.MknodAt(ctx, n.ino(), name, typ, mode&0o7777, dev, n.m.owner(ctx))
	if err != nil {
		return nil, n.m.errno("mknod", n.ino(), err)
	}
	return n.child(ctx, a, out), 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return nil, e
	}
	a, err := n.m.cl.SymlinkAt(ctx, n.ino(), name, target, n.m.owner(ctx))
	if err != nil {
		return nil, n.m.errno("symlink", n.ino(), err)
	}
	return n.child(ctx, a, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx = uninterruptible(ctx)
	n.mu.Lock()
	fa := n.fattr
	n.mu.Unlock()
	if fa != nil {
		return []byte(fa.GetSymlinkTarget()), 0
	}
	a, err := n.m.cl.GetAttr(ctx, n.ino())
	if err != nil {
		return nil, n.m.errno("readlink", n.ino(), err)
	}
	return []byte(a.GetSymlinkTarget()), 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return nil, e
	}
	ino := target.EmbeddedInode().StableAttr().Ino
	a, err := n.m.cl.LinkAt(ctx, ino, n.ino(), name)
	if err != nil {
		return nil, n.m.errno("link", ino, err)
	}
	return n.child(ctx, a, out), 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return e
	}
	if cn := n.lockedChild(name); cn != nil {
		defer cn.mu.Unlock()
		if cn.needsSillyLocked() {
			return n.m.errno("unlink", n.ino(), cn.sillyRenameLocked(ctx, n.ino(), name))
		}
	}
	return n.m.errno("unlink", n.ino(), n.m.cl.UnlinkAt(ctx, n.ino(), name))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return e
	}
	return n.m.errno("rmdir", n.ino(), n.m.cl.RmdirAt(ctx, n.ino(), name))
}

// Rename moves name to newName in newParent. When that replaces a file
// this mount has open, the file is first renamed away to a hidden name
// (as unlink does), so that it stays readable until closed.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if e := n.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return e
	}
	if e := np.squashCheck(ctx, mayWrite|mayExec); e != 0 {
		return e
	}
	replace := flags&(client.RenameNoReplace|client.RenameExchange) == 0
	if cn := np.lockedChild(newName); cn != nil {
		defer cn.mu.Unlock()
		if replace && cn.needsSillyLocked() && n.replacesFile(name, cn) {
			return n.m.errno("rename", n.ino(), n.renameOverOpen(ctx, name, np, newName, cn))
		}
	}
	return n.m.errno("rename", n.ino(), n.m.cl.RenameAt(ctx, n.ino(), name, np.ino(), newName, flags))
}

// replacesFile reports whether renaming name over dst would drop a name
// of dst, a file: not when name is dst itself (a no-op) or a directory
// (the server refuses that).
func (n *node) replacesFile(name string, dst *node) bool {
	src := n.GetChild(name)
	return src != nil && src != dst.EmbeddedInode() && !src.IsDir() && !dst.IsDir()
}

// renameOverOpen renames name over dst, which this mount has open (and
// locked): dst first goes to its hidden name, so it stays readable until
// closed, and comes back if the rename then fails.
func (n *node) renameOverOpen(ctx context.Context, name string, np *node, newName string, dst *node) error {
	if err := dst.sillyRenameLocked(ctx, np.ino(), newName); err != nil {
		return err
	}
	err := n.m.cl.RenameAt(ctx, n.ino(), name, np.ino(), newName, 0)
	if err != nil {
		dst.unSillyLocked(ctx, newName)
	}
	return err
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if e := n.squashCheck(ctx, mayRead); e != 0 {
		return nil, e
	}
	var entries []*stratapb.DirEntry
	var err error
	if n.isFrozen() {
		entries, err = n.readdirFrozen(ctx)
	} else {
		entries, err = n.m.cl.ReadDirAt(ctx, n.ino(), false)
	}
	if err != nil {
		return nil, n.m.errno("readdir", n.ino(), err)
	}
	list := make([]gofuse.DirEntry, 0, len(entries)+2)
	list = append(list,
		gofuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.ino()},
		gofuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: n.parentIno()})
	for _, e := range entries {
		if strings.HasPrefix(e.GetName(), sillyPrefix) {
			continue
		}
		list = append(list, gofuse.DirEntry{Name: e.GetName(), Mode: typeMode(e.GetType()), Ino: e.GetIno()})
	}
	return fs.NewListDirStream(list), 0
}

// parentIno is the inode of the directory's parent as the kernel knows
// it (the root is its own parent).
func (n *node) parentIno() uint64 {
	if _, p := n.Parent(); p != nil {
		return p.StableAttr().Ino
	}
	return n.ino()
}
